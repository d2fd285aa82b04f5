"""Plans: manifests and the jobs and rows their plans write; priorities and ages."""

from __future__ import annotations

import json
from collections.abc import Sequence

from songbatch.assemblyspec import AssemblySpec
from songbatch.ledger.core import LedgerBase
from songbatch.ledger.records import (
    JobRow,
    ManifestInfo,
    ManifestRecord,
    PlanDiff,
    PlanRow,
    dumps_json,
)


class PlansQueries(LedgerBase):
    def manifest_id(self, path: str) -> int | None:
        row = self.conn.execute("SELECT id FROM manifests WHERE path = ?", (path,)).fetchone()
        return None if row is None else int(row["id"])

    def diff_plan(self, record: ManifestRecord, rows: Sequence[PlanRow]) -> PlanDiff:
        """What `apply_plan` would do, without writing (the `plan` command's dry run)."""
        manifest_id = self.manifest_id(record.path)
        old_keys = self._plan_keys(manifest_id)
        new_keys = {row.key for row in rows}
        fresh = new_keys - old_keys
        known = self._existing_keys(fresh)
        old = self.conn.execute(
            "SELECT plan_sha256 FROM manifests WHERE id = ?", (manifest_id,)
        ).fetchone()
        # The written words are outside the plan hash (the audio's), so they are compared
        # here: a ledger planned before they were kept gets them at its next plan.
        changed = old is None or old["plan_sha256"] != record.plan_sha256
        return PlanDiff(
            new=len(fresh - known),
            reused=len(fresh & known),
            unchanged=len(new_keys & old_keys),
            dropped=len(old_keys - new_keys),
            manifest_changed=changed or self._written(manifest_id) != _written(rows),
        )

    def apply_plan(
        self, record: ManifestRecord, jobs: Sequence[JobRow], rows: Sequence[PlanRow]
    ) -> PlanDiff:
        """Record a manifest's plan in one transaction; an unchanged plan writes nothing."""
        self._frontier = []  # ranks may change: the next claim ranks again
        with self.immediate() as conn:
            diff = self.diff_plan(record, rows)
            if not diff.changed_anything:
                return diff
            now = self.now()
            conn.executemany(
                "INSERT OR IGNORE INTO jobs (key, kind, engine, model, request, chars, est_ms,"
                " created_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        j.key,
                        j.kind,
                        j.engine,
                        j.model,
                        dumps_json(j.request.to_dict()),
                        j.chars,
                        j.est_ms,
                        now,
                    )
                    for j in jobs
                ),
            )
            manifest_id = self._upsert_manifest(record, now)
            conn.execute("DELETE FROM manifest_jobs WHERE manifest_id = ?", (manifest_id,))
            conn.executemany(
                "INSERT INTO manifest_jobs (manifest_id, unit, seq, job_key, pause_after_ms,"
                " written) VALUES (?, ?, ?, ?, ?, ?)",
                ((manifest_id, r.unit, r.seq, r.key, r.pause_after_ms, r.written) for r in rows),
            )
            self._event(conn, "plan", manifest_id=manifest_id, detail=diff.__dict__)
            return diff

    def _upsert_manifest(self, record: ManifestRecord, now: str) -> int:
        values = (
            record.kind,
            record.title,
            record.slug,
            record.source_sha256,
            record.profile,
            record.plan_sha256,
            dumps_json(record.assembly.to_dict()),
            now,
        )
        row = self.conn.execute(
            "INSERT INTO manifests (kind, title, slug, source_sha256, profile, plan_sha256,"
            " assembly, planned_utc, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (path) DO UPDATE SET kind = excluded.kind, title = excluded.title,"
            " slug = excluded.slug, source_sha256 = excluded.source_sha256,"
            " profile = excluded.profile, plan_sha256 = excluded.plan_sha256,"
            " assembly = excluded.assembly, planned_utc = excluded.planned_utc RETURNING id",
            (*values, record.path),
        ).fetchone()
        return int(row["id"])

    def _plan_keys(self, manifest_id: int | None) -> set[str]:
        if manifest_id is None:
            return set()
        cursor = self.conn.execute(
            "SELECT job_key FROM manifest_jobs WHERE manifest_id = ?", (manifest_id,)
        )
        return {row[0] for row in cursor}

    def _written(self, manifest_id: int | None) -> dict[tuple[int, int], str]:
        if manifest_id is None:
            return {}
        cursor = self.conn.execute(
            "SELECT unit, seq, written FROM manifest_jobs"
            " WHERE manifest_id = ? AND written IS NOT NULL",
            (manifest_id,),
        )
        return {(row[0], row[1]): row[2] for row in cursor}

    def set_priorities(self, priorities: dict[int, int]) -> None:
        """Each manifest's `priority:` as its YAML says now (scheduling, not part of the plan:
        changing it re-renders nothing)."""
        self._frontier = []  # ranks may change: the next claim ranks again
        with self.immediate() as conn:
            conn.executemany(
                "UPDATE manifests SET priority = ? WHERE id = ? AND priority != ?",
                ((p, mid, p) for mid, p in priorities.items()),
            )

    def age_manifests(self, run_id: int, manifest_ids: Sequence[int]) -> None:
        """After a run: a manifest that still has pending work and got no job done in this run
        waited one more run (its rank rises by one, so no priority starves it for ever); one
        that got work, or has none left, starts again from its own priority."""
        self._frontier = []  # ranks may change: the next claim ranks again
        marks = ",".join("?" * len(manifest_ids))
        with self.immediate() as conn:
            conn.execute(
                "UPDATE manifests SET waited_runs = CASE"
                " WHEN EXISTS (SELECT 1 FROM manifest_jobs mj JOIN jobs j ON j.key = mj.job_key"
                "  WHERE mj.manifest_id = manifests.id AND j.state = 'pending')"
                " AND NOT EXISTS (SELECT 1 FROM attempts a JOIN manifest_jobs mj"
                "  ON mj.job_key = a.job_key WHERE a.run_id = ? AND a.outcome = 'done'"
                "  AND mj.manifest_id = manifests.id)"
                f" THEN waited_runs + 1 ELSE 0 END WHERE id IN ({marks})",
                (run_id, *manifest_ids),
            )

    def manifests(self, paths: Sequence[str] | None = None) -> list[ManifestInfo]:
        sql = "SELECT * FROM manifests"
        params: list[str] = []
        if paths is not None:
            sql += f" WHERE path IN ({','.join('?' * len(paths))})"
            params = list(paths)
        infos = [
            ManifestInfo(
                id=row["id"],
                path=row["path"],
                kind=row["kind"],
                title=row["title"],
                slug=row["slug"],
                profile=row["profile"],
                plan_sha256=row["plan_sha256"],
                assembly=AssemblySpec.from_dict(json.loads(row["assembly"])),
                planned_utc=row["planned_utc"],
            )
            for row in self.conn.execute(sql + " ORDER BY id", params)
        ]
        return infos

    def forget_manifest(self, path: str, *, because: str) -> None:
        """Drop a manifest whose file is gone (its outputs are another manifest's now); its jobs
        stay as cache."""
        self._frontier = []  # ranks may change: the next claim ranks again
        with self.immediate() as conn:
            row = conn.execute("SELECT id FROM manifests WHERE path = ?", (path,)).fetchone()
            if row is None:
                return
            conn.execute("DELETE FROM manifests WHERE id = ?", (row["id"],))
            self._event(conn, "manifest-forgotten", detail={"path": path, "because": because})

    def manifest_length(self, manifest_id: int) -> tuple[int, int]:
        """(estimated, rendered) length in ms, as the book or album plays: every row in order
        (a repeated sentence twice) with its pause, as Plan.est_ms counts it; rendered counts
        only rows whose job is done now (a job sent back by `retry --force` is not)."""
        row = self.conn.execute(
            "SELECT SUM(j.est_ms + mj.pause_after_ms),"
            " SUM(CASE WHEN j.state = 'done'"
            " THEN COALESCE(j.duration_ms, 0) + mj.pause_after_ms ELSE 0 END)"
            " FROM manifest_jobs mj JOIN jobs j ON j.key = mj.job_key WHERE mj.manifest_id = ?",
            (manifest_id,),
        ).fetchone()
        return int(row[0] or 0), int(row[1] or 0)


def _written(rows: Sequence[PlanRow]) -> dict[tuple[int, int], str]:
    """The rows' written words by place, as `PlansQueries._written` reads them back."""
    return {(r.unit, r.seq): r.written for r in rows if r.written is not None}
