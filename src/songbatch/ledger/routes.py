"""Routes of a hybrid run: which jobs of a local profile went to its spill-over backend, and why.

A routed job keeps its key (so a re-plan under the same profile finds it done) and its row; only
`jobs.route` ('spill') and `jobs.route_reason` change, and each decision is an event. The local
pool claims with Route.OWN, the spill-over backend with Route.SPILL (JobsQueries.claim), so a job
is on one backend's side at a time and its lease fences it as always.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from songbatch.engines.base import JobRequest
from songbatch.ledger.core import LedgerBase
from songbatch.ledger.records import SpillReason, stored_request


@dataclass(frozen=True)
class SpillJob:
    key: str
    kind: str
    request: JobRequest
    est_ms: int


@dataclass
class SpillUnit:
    """A chapter or track with jobs the local pool has still to claim."""

    manifest_id: int
    unit: int
    # A job of it is done or leased on its own side: spilling the rest would mix two voices.
    started_locally: bool
    jobs: list[SpillJob] = field(default_factory=list)


class RoutesQueries(LedgerBase):
    def spill_units(
        self, manifest_ids: Sequence[int], *, failed: Sequence[str] = ()
    ) -> list[SpillUnit]:
        """Units of these manifests with pending jobs on their own side, in the run's order
        (manifests as given, units in the manifest's order): the last ones are the tail a
        deadline spills first. Jobs in `failed` count as pending (they may go elsewhere)."""
        rows = self.conn.execute(
            """
            SELECT mj.manifest_id AS mid, mj.unit, o.key AS pos, j.key, j.kind, j.request,
                   j.est_ms,
                   EXISTS (SELECT 1 FROM manifest_jobs s JOIN jobs sj ON sj.key = s.job_key
                           WHERE s.manifest_id = mj.manifest_id AND s.unit = mj.unit
                           AND sj.route IS NULL AND sj.state IN ('done', 'leased')) AS started
            FROM manifest_jobs mj
            JOIN json_each(?) o ON o.value = mj.manifest_id
            JOIN jobs j ON j.key = mj.job_key
            WHERE (j.state = 'pending' OR (j.state = 'failed'
                   AND j.key IN (SELECT value FROM json_each(?)))) AND j.route IS NULL
            ORDER BY o.key, mj.unit, mj.seq
            """,
            (json.dumps(list(manifest_ids)), json.dumps(list(failed))),
        ).fetchall()
        units: dict[tuple[int, int], SpillUnit] = {}
        for row in rows:
            unit = units.setdefault(
                (row["mid"], row["unit"]),
                SpillUnit(row["mid"], row["unit"], bool(row["started"])),
            )
            if all(job.key != row["key"] for job in unit.jobs):  # a chunk repeated in a unit
                unit.jobs.append(
                    SpillJob(row["key"], row["kind"], stored_request(row["request"]), row["est_ms"])
                )
        return list(units.values())

    def own_pending(self, manifest_ids: Sequence[int], kinds: Sequence[str] = ()) -> int:
        """Pending jobs of these manifests on their own side (of these kinds, or any): what the
        local pool has left."""
        row = self.conn.execute(
            "SELECT COUNT(DISTINCT j.key) FROM manifest_jobs mj"
            " JOIN json_each(?) o ON o.value = mj.manifest_id JOIN jobs j ON j.key = mj.job_key"
            " WHERE j.state = 'pending' AND j.route IS NULL"
            " AND (? = '[]' OR j.kind IN (SELECT value FROM json_each(?)))",
            (json.dumps(list(manifest_ids)), json.dumps(list(kinds)), json.dumps(list(kinds))),
        ).fetchone()
        return int(row[0])

    def route_to_spill(
        self,
        keys: Sequence[str],
        reason: SpillReason,
        *,
        run_id: int,
        manifest_id: int,
        failed: Sequence[str] = (),
    ) -> int:
        """Send these pending jobs to the spill-over backend; how many moved (a job leased or
        finished meanwhile stays where it is). Jobs in `failed` that failed here for good are
        pending again there: a job the local engine cannot render may render remotely."""
        if not keys:
            return 0
        with self.immediate() as conn:
            moved = conn.execute(
                "UPDATE jobs SET route = 'spill', route_reason = ?, state = 'pending'"
                " WHERE route IS NULL AND key IN (SELECT value FROM json_each(?))"
                " AND (state = 'pending' OR (state = 'failed'"
                " AND key IN (SELECT value FROM json_each(?))))",
                (str(reason), json.dumps(list(keys)), json.dumps(list(failed))),
            ).rowcount
            if moved:
                self._event(
                    conn,
                    "spilled",
                    manifest_id=manifest_id,
                    detail={"run_id": run_id, "reason": str(reason), "jobs": moved},
                )
            return int(moved)

    def route_back(self, manifest_ids: Sequence[int], *, keep_whole_units: bool) -> int:
        """Pending jobs of these manifests back on their own side (a new run decides afresh;
        the spill-over backend stopped at its budget). With `keep_whole_units`, a unit part of
        which the spill-over backend has rendered keeps the rest there: one voice per chapter."""
        kept = (
            " AND NOT EXISTS (SELECT 1 FROM manifest_jobs s JOIN jobs sj ON sj.key = s.job_key"
            " WHERE s.manifest_id = mj.manifest_id AND s.unit = mj.unit"
            " AND sj.route = 'spill' AND sj.state = 'done')"
            if keep_whole_units
            else ""
        )
        with self.immediate() as conn:
            moved = conn.execute(
                "UPDATE jobs SET route = NULL, route_reason = NULL"
                " WHERE state = 'pending' AND route = 'spill' AND key IN ("
                " SELECT mj.job_key FROM manifest_jobs mj"
                " JOIN json_each(?) o ON o.value = mj.manifest_id"
                f" WHERE 1 {kept})",
                (json.dumps(list(manifest_ids)),),
            ).rowcount
            return int(moved)

    def spilled_jobs(self, manifest_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """Per manifest: its jobs on the spill-over side, by reason (any state)."""
        found: dict[int, dict[str, int]] = {}
        for row in self.conn.execute(
            "SELECT mj.manifest_id AS mid, j.route_reason AS reason, COUNT(DISTINCT j.key) AS n"
            " FROM manifest_jobs mj JOIN json_each(?) o ON o.value = mj.manifest_id"
            " JOIN jobs j ON j.key = mj.job_key WHERE j.route = 'spill'"
            " GROUP BY mj.manifest_id, j.route_reason",
            (json.dumps(list(manifest_ids)),),
        ):
            found.setdefault(row["mid"], {})[row["reason"] or "unknown"] = row["n"]
        return found

    def spilled_in_run(self, run_id: int) -> dict[str, int]:
        """Jobs this run sent to a spill-over backend, by reason."""
        found: dict[str, int] = {}
        for row in self.conn.execute(
            "SELECT json_extract(detail, '$.reason') AS reason,"
            " SUM(json_extract(detail, '$.jobs')) AS n FROM events"
            " WHERE kind = 'spilled' AND json_extract(detail, '$.run_id') = ?"
            " GROUP BY reason",
            (run_id,),
        ):
            found[str(row["reason"])] = int(row["n"])
        return found
