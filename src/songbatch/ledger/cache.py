"""The chunk cache as `gc` sees it: jobs no plan references, and dropping them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from songbatch.ledger.core import LedgerBase
from songbatch.ledger.records import UnreferencedJob


class CacheQueries(LedgerBase):
    def unreferenced_jobs(self) -> list[UnreferencedJob]:
        """Jobs no manifest's plan uses (cache of removed chapters, old edits, previews), with
        their recorded file and whether a reservation (money) names them."""
        cursor = self.conn.execute(
            "SELECT j.key, j.out_path, j.size, EXISTS (SELECT 1 FROM reservations r"
            " WHERE r.job_key = j.key) AS paid FROM jobs j WHERE NOT EXISTS"
            " (SELECT 1 FROM manifest_jobs mj WHERE mj.job_key = j.key) ORDER BY j.key"
        )
        return [self._unreferenced(row) for row in cursor]

    def known_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these keys have a job row (referenced or not)."""
        return self._existing_keys(set(keys))

    def recorded_chunk_paths(self) -> set[Path]:
        """Every chunk file a job row records, as a path on this machine."""
        cursor = self.conn.execute("SELECT out_path FROM jobs WHERE out_path IS NOT NULL")
        return {self.resolve(row[0]) for row in cursor}

    def drop_unreferenced(self, keys: Sequence[str]) -> list[UnreferencedJob]:
        """Forget these jobs if, checked again under the write lock, no plan uses them: their
        attempts and rows go; a job a reservation names keeps its row and attempts (money
        records are never dropped) but loses its file record and goes back to pending. Returns
        what was dropped, with the files the caller is now free to delete."""
        dropped: list[UnreferencedJob] = []
        with self.immediate() as conn:
            for key in keys:
                row = conn.execute(
                    "SELECT j.key, j.out_path, j.size, EXISTS (SELECT 1 FROM reservations r"
                    " WHERE r.job_key = j.key) AS paid FROM jobs j WHERE j.key = ? AND NOT"
                    " EXISTS (SELECT 1 FROM manifest_jobs mj WHERE mj.job_key = j.key)",
                    (key,),
                ).fetchone()
                if row is None:
                    continue
                if row["paid"]:
                    conn.execute(
                        "UPDATE jobs SET state = 'pending', out_path = NULL, sha256 = NULL,"
                        " size = NULL, mtime_ns = NULL, lease_token = NULL,"
                        " lease_expires_utc = NULL WHERE key = ?",
                        (key,),
                    )
                else:
                    conn.execute("DELETE FROM attempts WHERE job_key = ?", (key,))
                    conn.execute("DELETE FROM jobs WHERE key = ?", (key,))
                dropped.append(self._unreferenced(row))
            if dropped:
                self._event(
                    conn,
                    "gc",
                    detail={
                        "jobs": len(dropped),
                        "kept_paid": sum(1 for job in dropped if job.paid),
                    },
                )
        return dropped

    def jobs_used_only_by(self, manifest_ids: Sequence[int]) -> list[UnreferencedJob]:
        """Jobs that only these manifests' plans use: what forgetting them would leave
        unreferenced (gc's dry run)."""
        if not manifest_ids:
            return []
        marks = ",".join("?" * len(manifest_ids))
        cursor = self.conn.execute(
            "SELECT j.key, j.out_path, j.size, EXISTS (SELECT 1 FROM reservations r"
            " WHERE r.job_key = j.key) AS paid FROM jobs j WHERE EXISTS (SELECT 1 FROM"
            f" manifest_jobs mj WHERE mj.job_key = j.key AND mj.manifest_id IN ({marks}))"
            " AND NOT EXISTS (SELECT 1 FROM manifest_jobs mj WHERE mj.job_key = j.key"
            f" AND mj.manifest_id NOT IN ({marks})) ORDER BY j.key",
            [*manifest_ids, *manifest_ids],
        )
        return [self._unreferenced(row) for row in cursor]

    def referenced_job_count(self) -> int:
        """Distinct jobs some manifest's plan uses."""
        row = self.conn.execute("SELECT COUNT(DISTINCT job_key) FROM manifest_jobs").fetchone()
        return int(row[0])

    def _unreferenced(self, row: sqlite3.Row) -> UnreferencedJob:
        return UnreferencedJob(
            key=row["key"],
            path=None if row["out_path"] is None else self.resolve(row["out_path"]),
            size=row["size"],
            paid=bool(row["paid"]),
        )

    def manifests_where_path_starts(self, prefix: str) -> list[str]:
        """Paths of manifest rows whose path begins with `prefix` (temporary preview plans)."""
        cursor = self.conn.execute(
            "SELECT path FROM manifests WHERE substr(path, 1, ?) = ? ORDER BY id",
            (len(prefix), prefix),
        )
        return [row[0] for row in cursor]

    def job_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
