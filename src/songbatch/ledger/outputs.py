"""Published output files, their records and their failures."""

from __future__ import annotations

from collections.abc import Sequence

from songbatch.fsutil import FileStamp
from songbatch.ledger.core import LedgerBase
from songbatch.ledger.records import OutputFailure, OutputRecord, output_record


class OutputsQueries(LedgerBase):
    def output(self, path: str) -> OutputRecord | None:
        row = self.conn.execute("SELECT * FROM outputs WHERE path = ?", (path,)).fetchone()
        return None if row is None else output_record(row)

    def record_output(
        self,
        *,
        path: str,
        manifest_id: int,
        unit: int | None,
        fmt: str,
        inputs_sha256: str,
        sha256: str,
        duration_ms: int,
        stamp: FileStamp,
    ) -> None:
        """A file written (or adopted) for a manifest: it is this manifest's from now on."""
        with self.immediate() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO outputs (path, manifest_id, unit, format, inputs_sha256,"
                " sha256, duration_ms, written_utc, size, mtime_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    path,
                    manifest_id,
                    unit,
                    fmt,
                    inputs_sha256,
                    sha256,
                    duration_ms,
                    self.now(),
                    stamp.size,
                    stamp.mtime_ns,
                ),
            )
            conn.execute("DELETE FROM output_failures WHERE path = ?", (path,))

    def restamp_output(self, path: str, stamp: FileStamp) -> None:
        with self.immediate() as conn:
            conn.execute(
                "UPDATE outputs SET size = ?, mtime_ns = ? WHERE path = ?",
                (stamp.size, stamp.mtime_ns, path),
            )

    def forget_output(self, path: str) -> None:
        with self.immediate() as conn:
            conn.execute("DELETE FROM outputs WHERE path = ?", (path,))
            conn.execute("DELETE FROM output_failures WHERE path = ?", (path,))

    def outputs(self, manifest_id: int) -> list[OutputRecord]:
        cursor = self.conn.execute(
            "SELECT * FROM outputs WHERE manifest_id = ? ORDER BY unit, format", (manifest_id,)
        )
        return [output_record(row) for row in cursor]

    def record_output_failure(
        self,
        *,
        path: str,
        manifest_id: int,
        unit: int | None,
        fmt: str,
        error: str,
        run_id: int | None,
    ) -> None:
        with self.immediate() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO output_failures (path, manifest_id, unit, format, error,"
                " run_id, failed_utc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (path, manifest_id, unit, fmt, error, run_id, self.now()),
            )

    def output_failures(self, manifest_ids: Sequence[int]) -> list[OutputFailure]:
        marks = ",".join("?" * len(manifest_ids))
        cursor = self.conn.execute(
            f"SELECT * FROM output_failures WHERE manifest_id IN ({marks})"
            " ORDER BY manifest_id, unit, format",
            list(manifest_ids),
        )
        return [
            OutputFailure(
                path=row["path"],
                manifest_id=row["manifest_id"],
                unit=row["unit"],
                fmt=row["format"],
                error=row["error"],
            )
            for row in cursor
        ]

    def forget_output_failures(self, manifest_id: int, keep: Sequence[str]) -> None:
        """Failures of files the manifest no longer plans are moot."""
        with self.immediate() as conn:
            rows = conn.execute(
                "SELECT path FROM output_failures WHERE manifest_id = ?", (manifest_id,)
            ).fetchall()
            kept = set(keep)
            conn.executemany(
                "DELETE FROM output_failures WHERE path = ?",
                [(row[0],) for row in rows if row[0] not in kept],
            )
