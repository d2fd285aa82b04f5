"""Runs and what they leave: the run rows, events, each worker's load and each encode's time, and
the samples `cost` calibrates from.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Sequence
from typing import Any

from songbatch.ledger.core import LedgerBase
from songbatch.ledger.records import (
    ACTUAL_GROUPS,
    RECENT_TIMINGS,
    ActualRow,
    DeviceUse,
    EncodeSamples,
    LoadSamples,
    PredictSamples,
    RenderSamples,
    RunRecord,
    dumps_json,
)


class RunsQueries(LedgerBase):
    def start_run(self, argv: Sequence[str]) -> int:
        """Called with the run lock held: every lease still open belongs to a dead run."""
        self._frontier = []  # ranks may change: the next claim ranks again
        with self.immediate() as conn:
            now = self.now()
            conn.execute(
                "UPDATE attempts SET finished_utc = ?, outcome = 'abandoned' WHERE outcome IS NULL",
                (now,),
            )
            # Not the job's fault: the run died, so the job's failure count is not charged.
            conn.execute(
                "UPDATE jobs SET state = 'pending', lease_token = NULL, lease_expires_utc = NULL"
                " WHERE state = 'leased'"
            )
            # A job set aside by a transient fault (network, disk, memory) in an earlier run is
            # tried again at once: the fault may be long gone.
            conn.execute(
                "UPDATE jobs SET not_before_utc = NULL, deferrals = 0"
                " WHERE not_before_utc IS NOT NULL OR deferrals > 0"
            )
            conn.execute("UPDATE runs SET finished_utc = ? WHERE finished_utc IS NULL", (now,))
            row = conn.execute(
                "INSERT INTO runs (pid, host, argv, started_utc) VALUES (?, ?, ?, ?) RETURNING id",
                (os.getpid(), socket.gethostname(), dumps_json(list(argv)), now),
            ).fetchone()
            return int(row["id"])

    def finish_run(self, run_id: int, exit_code: int) -> None:
        with self.immediate() as conn:
            conn.execute(
                "UPDATE runs SET finished_utc = ?, exit_code = ? WHERE id = ?",
                (self.now(), exit_code, run_id),
            )

    def run(self, run_id: int) -> RunRecord | None:
        row = self.conn.execute(
            "SELECT id, started_utc, finished_utc, exit_code FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        return None if row is None else RunRecord(*row)

    def run_devices(self, run_id: int) -> list[DeviceUse]:
        """Per device (its worker: `cpu:0`, `cuda:1`; `replicate` on remote runs), this run's
        finished attempts: jobs done and failed, time spent rendering (engine and write, as the
        attempt recorded it; predict time on Replicate), audio made."""
        cursor = self.conn.execute(
            "SELECT a.worker, SUM(a.outcome = 'done') AS done,"
            " SUM(a.outcome IN ('failed', 'expired', 'lost')) AS failed,"
            " COALESCE(SUM(a.render_ms), 0) AS busy_ms,"
            " COALESCE(SUM(CASE WHEN a.outcome = 'done' THEN j.duration_ms END), 0) AS audio_ms"
            " FROM attempts a JOIN jobs j ON j.key = a.job_key"
            " WHERE a.run_id = ? AND a.outcome IN ('done', 'failed', 'expired', 'lost')"
            " GROUP BY a.worker ORDER BY a.worker",
            (run_id,),
        )
        return [
            DeviceUse(
                device=row["worker"],
                done=int(row["done"] or 0),
                failed=int(row["failed"] or 0),
                busy_ms=int(row["busy_ms"]),
                audio_ms=int(row["audio_ms"]),
            )
            for row in cursor
        ]

    def quick_check(self) -> str:
        """SQLite's PRAGMA quick_check: "ok", or the first problem it reports. Reads only."""
        row = self.conn.execute("PRAGMA quick_check").fetchone()
        return str(row[0])

    def integrity_ok(self) -> bool:
        row = self.conn.execute("PRAGMA integrity_check").fetchone()
        return bool(row[0] == "ok")

    def render_samples(self) -> list[RenderSamples]:
        """Local renders that finished, per engine, model and device type. Remote attempts
        are left out: their render time is the model's predict time on someone else's GPU."""
        cursor = self.conn.execute(
            "SELECT j.engine, j.model, a.device, COUNT(*),"
            " SUM(COALESCE(a.engine_ms, a.render_ms)), SUM(j.duration_ms),"
            " SUM(j.est_ms) FROM attempts a JOIN jobs j ON j.key = a.job_key"
            " WHERE a.outcome = 'done' AND a.render_ms IS NOT NULL AND j.duration_ms > 0"
            " AND j.engine != 'replicate'"
            " GROUP BY j.engine, j.model, a.device"
        )
        return [
            RenderSamples(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6] or 0))
            for r in cursor
        ]

    def record_load(
        self,
        *,
        run_id: int | None,
        engine: str,
        model: str,
        device: str,
        startup_s: float,
        load_s: float,
    ) -> None:
        with self.immediate() as conn:
            conn.execute(
                "INSERT INTO loads (run_id, engine, model, device, startup_ms, load_ms, utc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    engine,
                    model,
                    device,
                    round(startup_s * 1000),
                    round(load_s * 1000),
                    self.now(),
                ),
            )

    def record_encode(self, *, run_id: int | None, fmt: str, audio_ms: int, build_s: float) -> None:
        with self.immediate() as conn:
            conn.execute(
                "INSERT INTO encodes (run_id, format, audio_ms, build_ms, utc)"
                " VALUES (?, ?, ?, ?, ?)",
                (run_id, fmt, audio_ms, round(build_s * 1000), self.now()),
            )

    def load_samples(self) -> list[LoadSamples]:
        """The most recent start-ups and loads per engine, model and device type."""
        rows = self._recent_sums("loads", "engine, model, device", "startup_ms, load_ms")
        return [LoadSamples(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5])) for r in rows]

    def encode_samples(self) -> list[EncodeSamples]:
        """The most recent assembly builds per format."""
        rows = self._recent_sums("encodes", "format", "audio_ms, build_ms")
        return [EncodeSamples(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def _recent_sums(self, table: str, keys: str, columns: str) -> list[sqlite3.Row]:
        """Per group of `keys`: the count and the sums of `columns` over its most recent
        RECENT_TIMINGS rows. Names are this module's constants, never input."""
        sums = ", ".join(f"SUM({c.strip()})" for c in columns.split(","))
        return self.conn.execute(
            f"SELECT {keys}, COUNT(*), {sums} FROM (SELECT *, ROW_NUMBER() OVER"
            f" (PARTITION BY {keys} ORDER BY id DESC) AS recent FROM {table})"
            f" WHERE recent <= ? GROUP BY {keys}",
            (RECENT_TIMINGS,),
        ).fetchall()

    def predict_samples(self) -> list[PredictSamples]:
        """Settled predictions that succeeded with a reported predict time, per model."""
        cursor = self.conn.execute(
            "SELECT r.model, COUNT(*), SUM(r.predict_ms), SUM(j.est_ms)"
            " FROM reservations r JOIN jobs j ON j.key = r.job_key"
            " WHERE r.state = 'settled' AND r.outcome = 'succeeded' AND r.predict_ms IS NOT NULL"
            " GROUP BY r.model"
        )
        return [PredictSamples(r[0], int(r[1]), int(r[2]), int(r[3])) for r in cursor]

    def actual(self, by: str, since: str | None = None) -> list[ActualRow]:
        """Settled and open remote spend and local device time, grouped `by` one of
        ACTUAL_GROUPS, from `since` (a UTC date or ISO time) on. A job planned by several
        manifests counts once, for the first of them planned, so groups add up to the total."""
        if by not in ACTUAL_GROUPS:
            raise ValueError(f"unknown grouping {by!r}")
        floor = since or ""
        owner = (
            "(SELECT {col} FROM manifest_jobs mj JOIN manifests m ON m.id = mj.manifest_id"
            " WHERE mj.job_key = {table}.job_key ORDER BY m.id LIMIT 1)"
        )
        spend_group = {
            "run": "r.run_id",
            "day": "r.day",
            "manifest": owner.format(col="m.path", table="r"),
            "profile": owner.format(col="m.profile", table="r"),
        }[by]
        device_group = {
            "run": "a.run_id",
            "day": "substr(a.started_utc, 1, 10)",
            "manifest": owner.format(col="m.path", table="a"),
            "profile": owner.format(col="m.profile", table="a"),
        }[by]
        rows: dict[str, dict[str, Any]] = {}

        def row(group: Any) -> dict[str, Any]:
            name = "(none)" if group is None else str(group)
            return rows.setdefault(name, {"group": name})

        spend = self.conn.execute(
            f"SELECT {spend_group} AS g,"
            " COALESCE(SUM(CASE r.state WHEN 'settled' THEN r.settled_usd END), 0),"
            " SUM(r.state = 'settled'),"
            " COALESCE(SUM(CASE r.state WHEN 'open' THEN r.reserved_usd END), 0),"
            " SUM(r.state = 'open')"
            " FROM reservations r WHERE r.created_utc >= ? GROUP BY g",
            (floor,),
        )
        for group, settled, count, reserved, open_count in spend:
            item = row(group)
            item.update(
                settled_usd=float(settled),
                predictions=int(count or 0),
                open_usd=float(reserved),
                open_count=int(open_count or 0),
            )
        device = self.conn.execute(
            f"SELECT {device_group} AS g, SUM(a.render_ms), COUNT(*)"
            " FROM attempts a JOIN jobs j ON j.key = a.job_key"
            " WHERE j.engine != 'replicate' AND a.render_ms IS NOT NULL AND a.started_utc >= ?"
            " GROUP BY g",
            (floor,),
        )
        for group, render_ms, count in device:
            row(group).update(device_ms=int(render_ms or 0), renders=int(count))
        return [ActualRow(**rows[name]) for name in sorted(rows)]
