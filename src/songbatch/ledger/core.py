"""The connection: opening (read-only or migrated), `BEGIN IMMEDIATE`, the clock, paths relative to
the state folder; and the guards that turn an unopenable or damaged file into one line.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from songbatch.errors import LedgerDamaged, LedgerOutdated, LedgerUnavailable
from songbatch.fsutil import create_private
from songbatch.ledger.records import Clock, dumps_json, utc_iso
from songbatch.ledger.schema import migrations


class LedgerBase:
    """The connection every concern's queries run on (see ledger/__init__.py)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock = time.time,
        busy_timeout_s: float = 60.0,
        read_only: bool = False,
    ):
        """`read_only` (plan, status): the file is opened with SQLite's mode=ro, never created,
        migrated or switched to WAL, so looking at a workspace can't change its ledger."""
        self.path = path
        self.state_dir = path.parent
        self._state_prefix = str(self.state_dir) + os.sep
        self.clock = clock
        self.read_only = read_only
        # The units the last ranked claim chose, and the scope it ranked (see claim).
        self._frontier: list[tuple[int, int]] = []
        self._frontier_scope: tuple[object, ...] | None = None
        if read_only:
            target: str | Path = f"{path.resolve().as_uri()}?mode=ro"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            _make_private(path)
            target = path
        with _unopenable_guard(path):
            self.conn = sqlite3.connect(
                target,
                isolation_level=None,
                timeout=busy_timeout_s,
                check_same_thread=False,
                uri=read_only,
            )
        try:
            with damaged_ledger_guard(path), _unopenable_guard(path):
                self._configure()
        except BaseException:
            self.conn.close()
            raise

    def _configure(self) -> None:
        self.conn.row_factory = sqlite3.Row
        if not self.read_only:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.db = Database(self.conn)
        if self.read_only:
            if migrations.pending(self.db):
                raise LedgerOutdated(self.path)
            return
        if migrations.pending(self.db):
            with self.immediate():
                # Re-checked under the write lock: another process may have migrated meanwhile.
                migrations.apply(self.db)

    def close(self) -> None:
        self.conn.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def immediate(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def now(self) -> str:
        return utc_iso(self.clock())

    def _relative(self, path: Path) -> str:
        """Stored relative to the state folder, so a workspace can move."""
        text = str(path)
        if text.startswith(self._state_prefix):
            return Path(text[len(self._state_prefix) :]).as_posix()
        return text

    def resolve(self, out_path: str) -> Path:
        """A job's recorded file as a path on this machine."""
        path = Path(out_path)
        return path if path.is_absolute() else self.state_dir / path

    def _event(
        self,
        conn: sqlite3.Connection,
        kind: str,
        *,
        job_key: str | None = None,
        manifest_id: int | None = None,
        detail: Any = None,
    ) -> None:
        conn.execute(
            "INSERT INTO events (utc, kind, job_key, manifest_id, detail) VALUES (?, ?, ?, ?, ?)",
            (
                self.now(),
                kind,
                job_key,
                manifest_id,
                None if detail is None else dumps_json(detail),
            ),
        )

    def _existing_keys(self, keys: set[str]) -> set[str]:
        found: set[str] = set()
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            batch = ordered[start : start + 500]
            marks = ",".join("?" * len(batch))
            cursor = self.conn.execute(f"SELECT key FROM jobs WHERE key IN ({marks})", batch)
            found.update(row[0] for row in cursor)
        return found


def _make_private(path: Path) -> None:
    """The ledger holds the book's text: 0600, whatever the umask (SQLite gives its -wal and
    -shm files the database file's mode). A ledger from before this rule is tightened."""
    create_private(path)
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


@contextmanager
def _unopenable_guard(path: Path) -> Iterator[None]:
    """Opening the ledger failed for the file's or the disk's reasons (a folder in its place,
    no permission, a read-only or full disk): one line, not an internal error. A busy or
    locked database is not that, and is raised as it is."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        detail = str(exc)
        if "locked" in detail or "busy" in detail:
            raise
        raise LedgerUnavailable(path, detail) from None


@contextmanager
def damaged_ledger_guard(path: Path) -> Iterator[None]:
    """SQLite's "not a database" and "malformed" errors become one line saying what to do.
    Not OperationalError: a locked or busy database, or a full disk, is not damage."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:
            raise
        raise LedgerDamaged(path, str(exc)) from None
