"""Jobs and leases: claims in the whole-files-first order, heartbeats, the fenced publish,
failures, set-asides, retries, and what the ledger says of each job.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from songbatch.crashpoints import crash_point
from songbatch.engines.base import JobRequest
from songbatch.fsutil import FileStamp, fsync_dir, remove_quietly
from songbatch.ledger.core import LedgerBase
from songbatch.ledger.records import (
    ISO_FORMAT,
    NOT_THIS_RUN,
    AdoptedChunk,
    ChunkRecord,
    JobState,
    Lease,
    Publication,
    Route,
    StateCount,
    UnitJob,
    file_stamp,
    json_or_null,
    route_filter,
    stored_request,
    utc_iso,
)


class JobsQueries(LedgerBase):
    def claim(
        self,
        *,
        limit: int,
        worker: str,
        device: str,
        lease_s: float,
        run_id: int | None = None,
        manifest_ids: Sequence[int] | None = None,
        kinds: Sequence[str] | None = None,
        route: Route | None = None,
    ) -> list[Lease]:
        """Lease up to `limit` pending jobs, each with a new fencing token, in the order that
        makes a time window end with whole files (docs/architecture.md, "Claim order"):

        1. units (chapters, tracks) are ranked: manifest priority plus age first; units with a
           failed job last within it (they cannot be written this run); units already started
           (a job done or leased) before untouched ones; then the manifest's place in
           `manifest_ids` (the run's order) and the unit's place in its manifest;
        2. the frontier is the shortest prefix of that ranking whose pending jobs fill `limit`
           (the caller's pool: every device and batch slot), so devices stay busy;
        3. within the frontier, longest first (the long job is not the one the window waits on,
           and similar lengths meet in one batch); the units it holds whole go before the one
           the limit cuts, which is started by this claim and so leads the next one. (Longest
           first alone would leave an early unit's short job behind a later unit's long ones,
           claim after claim.)

        `route` (hybrid runs, ledger/routes.py): Route.OWN claims only jobs not sent to a
        spill-over backend, Route.SPILL only those that were; None, either."""
        now = self.clock()
        filters = ["j.state = 'pending'", "(j.not_before_utc IS NULL OR j.not_before_utc <= ?)"]
        params: list[Any] = [utc_iso(now)]
        if kinds:
            filters.append(f"j.kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        if route is not None:
            filters.append(route_filter(route))
        if manifest_ids is not None:
            # One parameter for any number of manifests, and its index is the run's order.
            scope, position = "JOIN json_each(?) o ON o.value = mj.manifest_id", "o.key"
            params.insert(0, json.dumps(list(manifest_ids)))
        else:
            scope, position = "", "m.id"
        sql = f"""
            WITH cand AS (
                SELECT j.key, mj.manifest_id AS mid, mj.unit AS unit,
                       m.priority + m.waited_runs AS rank, {position} AS pos
                FROM jobs j
                JOIN manifest_jobs mj ON mj.job_key = j.key
                JOIN manifests m ON m.id = mj.manifest_id
                {scope}
                WHERE {" AND ".join(filters)}
            ),
            units AS (
                SELECT mid, unit, rank, pos, COUNT(DISTINCT key) AS n,
                    EXISTS (SELECT 1 FROM manifest_jobs s JOIN jobs sj ON sj.key = s.job_key
                            WHERE s.manifest_id = mid AND s.unit = c.unit
                            AND sj.state IN ('done', 'leased')) AS started,
                    EXISTS (SELECT 1 FROM manifest_jobs s JOIN jobs sj ON sj.key = s.job_key
                            WHERE s.manifest_id = mid AND s.unit = c.unit
                            AND sj.state = 'failed') AS blocked
                FROM cand c GROUP BY mid, unit
            ),
            ranked AS (
                SELECT mid, unit, n, COALESCE(SUM(n) OVER (
                    ORDER BY rank DESC, blocked, started DESC, pos, unit
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
                FROM units
            )
            SELECT j.key, j.kind, j.engine, j.model, j.request, j.est_ms,
                   MIN(c.mid) AS mid, MIN(c.unit) AS unit, MIN(r.before + r.n > ?) AS partial
            FROM cand c JOIN ranked r ON r.mid = c.mid AND r.unit = c.unit
            JOIN jobs j ON j.key = c.key
            WHERE r.before < ?
            GROUP BY j.key
            ORDER BY partial, j.est_ms DESC, j.key LIMIT ?
        """
        ranked_in = (
            None if manifest_ids is None else tuple(manifest_ids),
            tuple(kinds or ()),
            route,
        )
        with self.immediate() as conn:
            rows = self._claim_frontier(conn, filters, params, ranked_in, limit)
            if rows is None:
                rows = conn.execute(sql, (*params, limit, limit, limit)).fetchall()
                self._frontier = list(dict.fromkeys((r["mid"], r["unit"]) for r in rows))
                self._frontier_scope = ranked_in
            started, expires = utc_iso(now), utc_iso(now + lease_s)
            leases = []
            for row in rows:
                token = conn.execute(
                    "INSERT INTO attempts (job_key, run_id, worker, device, started_utc)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING token",
                    (row["key"], run_id, worker, device, started),
                ).fetchone()[0]
                conn.execute(
                    "UPDATE jobs SET state = 'leased', lease_token = ?, lease_expires_utc = ?"
                    " WHERE key = ?",
                    (token, expires, row["key"]),
                )
                leases.append(
                    Lease(
                        key=row["key"],
                        token=int(token),
                        kind=row["kind"],
                        engine=row["engine"],
                        model=row["model"],
                        request=stored_request(row["request"]),
                        est_ms=int(row["est_ms"]),
                    )
                )
            return leases

    def _claim_frontier(
        self,
        conn: sqlite3.Connection,
        filters: list[str],
        params: list[Any],
        scope: tuple[object, ...],
        limit: int,
    ) -> list[sqlite3.Row] | None:
        """The cheap claim: pending jobs of the units the last ranked claim chose, longest
        first, or None when they cannot fill `limit` (then the ranking runs again). Ranks do not
        change within a run (priorities are set before it, ages after it), and the units a
        ranked claim chose stay at the top of the ranking while they have pending jobs, so this
        takes what the ranking would, without reading every pending job of the run: through
        the pending-by-length index, probing each job's units. (A unit whose job failed in this
        run is not moved last until the ranking runs again.)"""
        if not self._frontier or self._frontier_scope != scope:
            return None
        sql = (
            "SELECT j.key, j.kind, j.engine, j.model, j.request, j.est_ms FROM jobs j"
            f" WHERE {' AND '.join(filters)} AND EXISTS (SELECT 1 FROM manifest_jobs mj"
            " JOIN json_each(?) f ON json_extract(f.value, '$[0]') = mj.manifest_id"
            " AND json_extract(f.value, '$[1]') = mj.unit WHERE mj.job_key = j.key)"
            # The index's own order: a tie-break on key would sort every pending job of a
            # length (a book of equal chunks) in a temp b-tree on each claim.
            " ORDER BY j.est_ms DESC LIMIT ?"
        )
        # The ranked query's first parameter is its manifest scope; the filters' come after.
        values = params[1:] if scope[0] is not None else params
        rows = conn.execute(sql, (*values, json.dumps(self._frontier), limit)).fetchall()
        return rows if len(rows) == limit else None

    def heartbeat(self, tokens: Sequence[int], lease_s: float) -> int:
        """Extend the leases of jobs that made progress; returns how many are still ours."""
        if not tokens:
            return 0
        marks = ",".join("?" * len(tokens))
        with self.immediate() as conn:
            cursor = conn.execute(
                f"UPDATE jobs SET lease_expires_utc = ? WHERE state = 'leased'"
                f" AND lease_token IN ({marks})",
                (utc_iso(self.clock() + lease_s), *tokens),
            )
            return int(cursor.rowcount)

    def publish_many(self, items: Sequence[Publication]) -> list[bool]:
        """The publish protocol's second half, for one or more finished files in one transaction:
        under the write lock check each token, move each file into place, sync the folders,
        mark done. A stale lease's file is deleted, never published."""
        results: list[bool] = []
        stamps: list[FileStamp] = []
        with self.immediate() as conn:
            now = self.now()
            folders: set[Path] = set()
            for item in items:
                if not self._holds(conn, item.lease):
                    conn.execute(
                        "UPDATE attempts SET finished_utc = ?, outcome = 'discarded'"
                        " WHERE token = ? AND outcome IS NULL",
                        (now, item.lease.token),
                    )
                    remove_quietly(item.tmp)
                    results.append(False)
                    continue
                # The rename keeps size and mtime: stamped now, they describe the final file.
                stamps.append(FileStamp.of(item.tmp))
                os.replace(item.tmp, item.final)
                folders.add(item.final.parent)
                results.append(True)
            for folder in folders:
                fsync_dir(folder)
            crash_point("after-replace")
            done = [item for item, ok in zip(items, results, strict=True) if ok]
            conn.executemany(
                "UPDATE jobs SET state = 'done', lease_token = NULL, lease_expires_utc = NULL,"
                " out_path = ?, sha256 = ?, duration_ms = ?, error = NULL, done_utc = ?,"
                " info = ?, size = ?, mtime_ns = ?, not_before_utc = NULL, deferrals = 0"
                " WHERE key = ?",
                [
                    (
                        self._relative(i.final),
                        i.sha256,
                        i.duration_ms,
                        now,
                        json_or_null(i.info),
                        stamp.size,
                        stamp.mtime_ns,
                        i.lease.key,
                    )
                    for i, stamp in zip(done, stamps, strict=True)
                ],
            )
            conn.executemany(
                "UPDATE attempts SET finished_utc = ?, outcome = 'done', render_ms = ?,"
                " engine_ms = ?, cost_usd = ?, worker = COALESCE(?, worker),"
                " device = COALESCE(?, device), info = ? WHERE token = ?",
                [
                    (
                        now,
                        i.render_ms,
                        i.engine_ms,
                        i.cost_usd,
                        i.worker,
                        i.device,
                        json_or_null(i.info),
                        i.lease.token,
                    )
                    for i in done
                ],
            )
        return results

    def fail(
        self,
        lease: Lease,
        error: str,
        *,
        retryable: bool,
        max_failures: int,
        outcome: str = "failed",
        render_ms: int | None = None,
        worker: str | None = None,
        device: str | None = None,
    ) -> JobState | None:
        """Charge a failed attempt to the job: back to pending while it has tries left, else
        failed. Returns the job's new state, or None if the lease was stale (nothing changed)."""
        self._frontier = []  # ranks may change: the next claim ranks again
        with self.immediate() as conn:
            if not self._holds(conn, lease):
                return None
            row = conn.execute("SELECT failures FROM jobs WHERE key = ?", (lease.key,)).fetchone()
            failures = int(row["failures"]) + 1
            state = JobState.PENDING if retryable and failures < max_failures else JobState.FAILED
            now = self.now()
            conn.execute(
                "UPDATE jobs SET state = ?, failures = ?, error = ?, lease_token = NULL,"
                " lease_expires_utc = NULL WHERE key = ?",
                (state, failures, error, lease.key),
            )
            conn.execute(
                "UPDATE attempts SET finished_utc = ?, outcome = ?, error = ?, render_ms = ?,"
                " worker = COALESCE(?, worker), device = COALESCE(?, device) WHERE token = ?",
                (now, outcome, error, render_ms, worker, device, lease.token),
            )
            return state

    def release(self, lease: Lease, outcome: str = "released") -> bool:
        """Give a lease back without charging the job (a stop, a cancelled prefetch)."""
        with self.immediate() as conn:
            if not self._holds(conn, lease):
                return False
            conn.execute(
                "UPDATE jobs SET state = 'pending', lease_token = NULL, lease_expires_utc = NULL"
                " WHERE key = ?",
                (lease.key,),
            )
            conn.execute(
                "UPDATE attempts SET finished_utc = ?, outcome = ? WHERE token = ?",
                (self.now(), outcome, lease.token),
            )
            return True

    def release_run(self, run_id: int, outcome: str) -> int:
        """Give back every lease this run still holds, uncharged: the stop path's last word,
        which does not depend on the executor's bookkeeping (a signal landing between a claim's
        commit and its leases reaching the executor leaves them known only here). A transaction
        an interrupted statement left open is rolled back first. Returns how many."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        with self.immediate() as conn:
            held = conn.execute(
                "SELECT j.key, j.lease_token FROM jobs j JOIN attempts a ON a.token = j.lease_token"
                " WHERE j.state = 'leased' AND a.run_id = ?",
                (run_id,),
            ).fetchall()
            for key, token in held:
                conn.execute(
                    "UPDATE jobs SET state = 'pending', lease_token = NULL,"
                    " lease_expires_utc = NULL WHERE key = ?",
                    (key,),
                )
                conn.execute(
                    "UPDATE attempts SET finished_utc = ?, outcome = ? WHERE token = ?",
                    (self.now(), outcome, token),
                )
            return len(held)

    def defer(
        self,
        lease: Lease,
        error: str,
        *,
        delay_s: float | None,
        worker: str | None = None,
        device: str | None = None,
    ) -> int | None:
        """A transient fault (network, disk full, out of memory): the job goes back to pending,
        not charged, and is not claimed again for `delay_s` (None: not again in this run; the
        next run tries it at once). Returns how many times it was deferred, None if stale."""
        with self.immediate() as conn:
            if not self._holds(conn, lease):
                return None
            now = self.clock()
            not_before = utc_iso(now + delay_s) if delay_s is not None else NOT_THIS_RUN
            row = conn.execute(
                "UPDATE jobs SET state = 'pending', lease_token = NULL, lease_expires_utc = NULL,"
                " error = ?, not_before_utc = ?, deferrals = deferrals + 1 WHERE key = ?"
                " RETURNING deferrals",
                (error, not_before, lease.key),
            ).fetchone()
            conn.execute(
                "UPDATE attempts SET finished_utc = ?, outcome = 'transient', error = ?,"
                " worker = COALESCE(?, worker), device = COALESCE(?, device) WHERE token = ?",
                (utc_iso(now), error, worker, device, lease.token),
            )
            return int(row["deferrals"])

    def deferrals(self, key: str) -> int:
        return self._count_of(key, "deferrals")

    def failures(self, key: str) -> int:
        """Attempts charged to the job (a set-aside is not charged)."""
        return self._count_of(key, "failures")

    def _count_of(self, key: str, column: str) -> int:
        row = self.conn.execute(f"SELECT {column} FROM jobs WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[column])

    def next_deferred(self, manifest_ids: Sequence[int]) -> float | None:
        """When the earliest job set aside for a while in this run may be claimed again (epoch
        seconds); None when no job of these manifests waits so."""
        marks = ",".join("?" * len(manifest_ids))
        row = self.conn.execute(
            "SELECT MIN(j.not_before_utc) FROM jobs j WHERE j.state = 'pending'"
            " AND j.not_before_utc IS NOT NULL AND j.not_before_utc < ? AND EXISTS (SELECT 1"
            f" FROM manifest_jobs mj WHERE mj.job_key = j.key AND mj.manifest_id IN ({marks}))",
            (NOT_THIS_RUN, *manifest_ids),
        ).fetchone()
        if row[0] is None:
            return None
        return datetime.strptime(row[0], ISO_FORMAT).replace(tzinfo=timezone.utc).timestamp()

    def _holds(self, conn: sqlite3.Connection, lease: Lease) -> bool:
        row = conn.execute(
            "SELECT state, lease_token FROM jobs WHERE key = ?", (lease.key,)
        ).fetchone()
        held = row is not None and row["state"] == JobState.LEASED
        return held and row["lease_token"] == lease.token

    def state_counts(self, manifest_ids: Sequence[int] | None = None) -> list[StateCount]:
        sql = (
            "SELECT mj.manifest_id, j.state, COUNT(*) AS jobs, SUM(j.chars) AS chars,"
            " SUM(j.est_ms) AS est_ms, SUM(COALESCE(j.duration_ms, 0)) AS duration_ms"
            " FROM manifest_jobs mj JOIN jobs j ON j.key = mj.job_key"
        )
        params: list[int] = []
        if manifest_ids is not None:
            sql += f" WHERE mj.manifest_id IN ({','.join('?' * len(manifest_ids))})"
            params = list(manifest_ids)
        sql += " GROUP BY mj.manifest_id, j.state ORDER BY mj.manifest_id, j.state"
        return [
            StateCount(
                manifest_id=row["manifest_id"],
                state=JobState(row["state"]),
                jobs=row["jobs"],
                chars=row["chars"] or 0,
                est_ms=row["est_ms"] or 0,
                duration_ms=row["duration_ms"] or 0,
            )
            for row in self.conn.execute(sql, params)
        ]

    def unit_jobs(self, manifest_id: int, unit: int) -> list[UnitJob]:
        cursor = self.conn.execute(
            "SELECT mj.seq, mj.job_key, mj.pause_after_ms, mj.written, j.state, j.out_path,"
            " j.sha256, j.duration_ms FROM manifest_jobs mj JOIN jobs j ON j.key = mj.job_key"
            " WHERE mj.manifest_id = ? AND mj.unit = ? ORDER BY mj.seq",
            (manifest_id, unit),
        )
        return [
            UnitJob(
                seq=row["seq"],
                key=row["job_key"],
                state=JobState(row["state"]),
                pause_after_ms=row["pause_after_ms"],
                out_path=row["out_path"],
                sha256=row["sha256"],
                duration_ms=row["duration_ms"],
                written=row["written"],
            )
            for row in cursor
        ]

    def failed_jobs(self, manifest_ids: Sequence[int]) -> list[tuple[str, int, int, str | None]]:
        """(key, manifest id, unit, error) of each failed job of these manifests."""
        return self._jobs_with_errors(manifest_ids, "j.state = 'failed'")

    def set_aside_jobs(self, manifest_ids: Sequence[int]) -> list[tuple[str, int, int, str | None]]:
        """Pending jobs of these manifests that a transient fault set aside (their last error),
        to be tried again by the next run without `retry`."""
        return self._jobs_with_errors(manifest_ids, "j.state = 'pending' AND j.deferrals > 0")

    def _jobs_with_errors(
        self, manifest_ids: Sequence[int], condition: str
    ) -> list[tuple[str, int, int, str | None]]:
        marks = ",".join("?" * len(manifest_ids))
        cursor = self.conn.execute(
            "SELECT j.key, mj.manifest_id, mj.unit, j.error FROM jobs j JOIN manifest_jobs mj"
            f" ON mj.job_key = j.key WHERE {condition} AND mj.manifest_id IN ({marks})"
            " GROUP BY j.key, mj.manifest_id, mj.unit ORDER BY mj.manifest_id, mj.unit",
            list(manifest_ids),
        )
        return [(row[0], row[1], row[2], row[3]) for row in cursor]

    def job(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
        return None if row is None else dict(row)

    def job_requests(self, keys: Sequence[str]) -> dict[str, JobRequest]:
        """The requests of those of these jobs the ledger has, by key."""
        found: dict[str, JobRequest] = {}
        for key in dict.fromkeys(keys):
            row = self.conn.execute("SELECT request FROM jobs WHERE key = ?", (key,)).fetchone()
            if row is not None:
                found[key] = stored_request(row[0])
        return found

    def done_chunks(self, manifest_ids: Sequence[int]) -> list[ChunkRecord]:
        """Each done job these manifests use, with what was recorded of its file."""
        marks = ",".join("?" * len(manifest_ids))
        cursor = self.conn.execute(
            "SELECT DISTINCT j.key, j.out_path, j.sha256, j.size, j.mtime_ns FROM jobs j"
            " JOIN manifest_jobs mj ON mj.job_key = j.key"
            f" WHERE j.state = 'done' AND mj.manifest_id IN ({marks})",
            list(manifest_ids),
        )
        return [
            ChunkRecord(
                key=row["key"],
                path=self.resolve(row["out_path"]),
                sha256=row["sha256"],
                stamp=file_stamp(row["size"], row["mtime_ns"]),
            )
            for row in cursor
        ]

    def requeue_chunks(self, keys: Sequence[str], reason: str) -> None:
        """Done jobs whose file is gone or damaged go back to pending, recorded as `reason`
        (missing-file, damaged-file); not charged: the job did nothing wrong."""
        with self.immediate() as conn:
            for key in keys:
                conn.execute(
                    "UPDATE jobs SET state = 'pending', out_path = NULL, sha256 = NULL,"
                    " size = NULL, mtime_ns = NULL WHERE key = ? AND state = 'done'",
                    (key,),
                )
                self._event(conn, reason, job_key=key)

    def restamp_chunks(self, stamps: Sequence[tuple[str, FileStamp]]) -> None:
        """A file whose size or mtime changed but whose bytes hashed the same (copied, touched,
        or recorded before stamps existed): remember the new stamp, so the hash runs once."""
        if not stamps:
            return
        with self.immediate() as conn:
            conn.executemany(
                "UPDATE jobs SET size = ?, mtime_ns = ? WHERE key = ?",
                [(stamp.size, stamp.mtime_ns, key) for key, stamp in stamps],
            )

    def unrendered(self, manifest_ids: Sequence[int]) -> list[str]:
        """Pending jobs of these manifests that never had a file recorded (a forced retry keeps
        its record, so it is never adopted back)."""
        marks = ",".join("?" * len(manifest_ids))
        cursor = self.conn.execute(
            "SELECT DISTINCT j.key FROM jobs j JOIN manifest_jobs mj ON mj.job_key = j.key"
            f" WHERE j.state = 'pending' AND j.out_path IS NULL AND mj.manifest_id IN ({marks})",
            list(manifest_ids),
        )
        return [row[0] for row in cursor]

    def adopt_chunks(self, chunks: Sequence[AdoptedChunk], *, run_id: int | None) -> int:
        """Chunk files found on disk under their content key (a lost ledger, a run killed
        between its rename and its commit), verified by the caller: done, with one attempt on
        record that says where they came from."""
        adopted = 0
        with self.immediate() as conn:
            now = self.now()
            for chunk in chunks:
                cursor = conn.execute(
                    "UPDATE jobs SET state = 'done', out_path = ?, sha256 = ?, duration_ms = ?,"
                    " size = ?, mtime_ns = ?, error = NULL, done_utc = ?, not_before_utc = NULL"
                    " WHERE key = ? AND state = 'pending' AND out_path IS NULL",
                    (
                        self._relative(chunk.path),
                        chunk.sha256,
                        chunk.duration_ms,
                        chunk.stamp.size,
                        chunk.stamp.mtime_ns,
                        now,
                        chunk.key,
                    ),
                )
                if cursor.rowcount == 0:
                    continue
                conn.execute(
                    "INSERT INTO attempts (job_key, run_id, worker, device, started_utc,"
                    " finished_utc, outcome) VALUES (?, ?, 'adopted', 'disk', ?, ?, 'done')",
                    (chunk.key, run_id, now, now),
                )
                self._event(conn, "adopted", job_key=chunk.key)
                adopted += 1
        return adopted

    def retry(self, manifest_ids: Sequence[int], *, force: bool = False) -> int:
        """Failed jobs (and with `force` done ones too) go back to pending; forcing is recorded."""
        self._frontier = []  # ranks may change: the next claim ranks again
        states = ("failed", "done") if force else ("failed",)
        marks = ",".join("?" * len(manifest_ids))
        with self.immediate() as conn:
            keys = [
                row[0]
                for row in conn.execute(
                    f"SELECT DISTINCT j.key FROM jobs j JOIN manifest_jobs mj"
                    f" ON mj.job_key = j.key WHERE mj.manifest_id IN ({marks})"
                    f" AND j.state IN ({','.join('?' * len(states))})",
                    (*manifest_ids, *states),
                )
            ]
            for key in keys:
                row = conn.execute(
                    "UPDATE jobs SET state = 'pending', failures = 0, error = NULL"
                    " WHERE key = ? RETURNING sha256",
                    (key,),
                ).fetchone()
                kind = "retry-forced" if row["sha256"] else "retry"
                self._event(conn, kind, job_key=key)
            return len(keys)

    def done_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these jobs are done (their chunk is in the cache: free to reuse)."""
        done: set[str] = set()
        unique = sorted(set(keys))
        for start in range(0, len(unique), 500):  # under SQLite's bound on parameters
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            cursor = self.conn.execute(
                f"SELECT key FROM jobs WHERE state = 'done' AND key IN ({marks})", part
            )
            done.update(row[0] for row in cursor)
        return done
