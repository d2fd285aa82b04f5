"""Money: budget reservations under every cap in one transaction, settling, and Replicate's
uploads. Only the Replicate backend and `cost` use it.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from songbatch.ledger.core import LedgerBase
from songbatch.ledger.records import (
    HOUR_S,
    CapReached,
    OpenReservation,
    SpendCaps,
    dumps_json,
    utc_iso,
)


class SpendQueries(LedgerBase):
    def reserve(
        self,
        *,
        job_key: str,
        token: int | None,
        run_id: int | None,
        model: str,
        model_input: dict[str, Any],
        usd: float,
        seconds: float,
        caps: SpendCaps,
    ) -> int:
        """Reserve a create's worst-case cost, in one transaction with the cap checks: settled
        plus open reservations plus this one never exceed a cap. Raises CapReached."""
        with self.immediate() as conn:
            now = self.clock()
            day = utc_iso(now)[:10]
            if caps.run_usd is not None:
                self._check_cap(conn, "run", caps.run_usd, usd, "run_id = ?", run_id)
            if caps.day_usd is not None:
                self._check_cap(conn, "daily", caps.day_usd, usd, "day = ?", day)
            if caps.hour_usd is not None:
                # Every reservation made in the last 60 minutes, at its settled cost once
                # settled. Checked at each reserve, this bounds every 60-minute window: the
                # last reserve inside any window saw all of that window's earlier ones.
                since = utc_iso(now - HOUR_S)
                self._check_cap(conn, "hourly", caps.hour_usd, usd, "created_utc > ?", since)
            row = conn.execute(
                "INSERT INTO reservations (run_id, job_key, token, model, input, reserved_usd,"
                " reserved_s, day, created_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    run_id,
                    job_key,
                    token,
                    model,
                    dumps_json(model_input),
                    usd,
                    seconds,
                    day,
                    utc_iso(now),
                ),
            ).fetchone()
            return int(row["id"])

    def _check_cap(
        self, conn: sqlite3.Connection, name: str, limit: float, usd: float, where: str, arg: Any
    ) -> None:
        committed = self._committed(conn, where, arg)
        # A micro-dollar of slack: sums of REALs are not exact.
        if committed + usd > limit + 1e-6:
            raise CapReached(name, limit, committed, usd)

    def _committed(self, conn: sqlite3.Connection, where: str, arg: Any) -> float:
        row = conn.execute(
            "SELECT COALESCE(SUM(CASE state WHEN 'open' THEN reserved_usd ELSE settled_usd END),"
            f" 0) FROM reservations WHERE {where}",
            (arg,),
        ).fetchone()
        return float(row[0])

    def attach_prediction(self, reservation_id: int, prediction_id: str) -> None:
        with self.immediate() as conn:
            conn.execute(
                "UPDATE reservations SET prediction_id = ? WHERE id = ?",
                (prediction_id, reservation_id),
            )

    def settle(
        self,
        reservation_id: int,
        *,
        usd: float,
        predict_ms: int | None,
        outcome: str,
        token: int | None = None,
    ) -> None:
        """Close a reservation at what the prediction cost; the attempt records it too."""
        with self.immediate() as conn:
            conn.execute(
                "UPDATE reservations SET state = 'settled', settled_usd = ?, predict_ms = ?,"
                " outcome = ?, settled_utc = ? WHERE id = ? AND state = 'open'",
                (usd, predict_ms, outcome, self.now(), reservation_id),
            )
            if token is not None:
                conn.execute(
                    "UPDATE attempts SET predict_ms = ?, cost_usd = COALESCE(cost_usd, 0) + ?"
                    " WHERE token = ?",
                    (predict_ms, usd, token),
                )

    def open_reservations(self) -> list[OpenReservation]:
        cursor = self.conn.execute("SELECT * FROM reservations WHERE state = 'open' ORDER BY id")
        return [
            OpenReservation(
                id=row["id"],
                run_id=row["run_id"],
                job_key=row["job_key"],
                model=row["model"],
                input=json.loads(row["input"]),
                reserved_usd=float(row["reserved_usd"]),
                reserved_s=float(row["reserved_s"]),
                prediction_id=row["prediction_id"],
                created_utc=row["created_utc"],
            )
            for row in cursor
        ]

    def spend(self, *, run_id: int | None = None, day: str | None = None) -> tuple[float, float]:
        """(settled, still reserved) USD of one run or one UTC day (YYYY-MM-DD)."""
        where, arg = ("run_id = ?", run_id) if day is None else ("day = ?", day)
        row = self.conn.execute(
            "SELECT COALESCE(SUM(CASE state WHEN 'settled' THEN settled_usd END), 0),"
            " COALESCE(SUM(CASE state WHEN 'open' THEN reserved_usd END), 0)"
            f" FROM reservations WHERE {where}",
            (arg,),
        ).fetchone()
        return float(row[0]), float(row[1])

    def upload_url(self, sha256: str) -> str | None:
        """A voice file's uploaded URL, while it has not expired."""
        row = self.conn.execute(
            "SELECT url FROM uploads WHERE sha256 = ? AND (expires_utc IS NULL OR expires_utc > ?)",
            (sha256, self.now()),
        ).fetchone()
        return None if row is None else str(row["url"])

    def record_upload(self, sha256: str, url: str, expires_utc: str | None) -> None:
        with self.immediate() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO uploads (sha256, url, expires_utc, created_utc)"
                " VALUES (?, ?, ?, ?)",
                (sha256, url, expires_utc, self.now()),
            )
