"""All SQL lives here: migrations, planning writes, claims, heartbeats, publish, failures, status.

Concurrency rules (FIELD-NOTES.md): every read-then-write runs in `BEGIN IMMEDIATE`, so a claim
takes the write lock before it reads and never meets SQLITE_BUSY half way; busy_timeout covers the
wait. The connection is in autocommit mode (isolation_level=None) so no transaction opens by
accident and holds the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from songbatch.crashpoints import crash_point
from songbatch.errors import LedgerDamaged, LedgerOutdated, LedgerUnavailable
from songbatch.fsutil import FileStamp, create_private, fsync_dir, remove_quietly

Clock = Callable[[], float]

migrations = Migrations("songbatch")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE manifests (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            slug TEXT NOT NULL,
            source_sha256 TEXT NOT NULL,
            profile TEXT NOT NULL,
            plan_sha256 TEXT NOT NULL,
            assembly TEXT NOT NULL,
            planned_utc TEXT NOT NULL
        );
        CREATE TABLE jobs (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            engine TEXT NOT NULL,
            model TEXT NOT NULL,
            request TEXT NOT NULL,
            chars INTEGER NOT NULL,
            est_ms INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'leased', 'done', 'failed')),
            lease_token INTEGER,
            lease_expires_utc TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            out_path TEXT,
            sha256 TEXT,
            duration_ms INTEGER,
            created_utc TEXT NOT NULL,
            done_utc TEXT
        );
        CREATE INDEX jobs_by_state ON jobs (state, est_ms DESC);
        CREATE TABLE manifest_jobs (
            manifest_id INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
            unit INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            job_key TEXT NOT NULL REFERENCES jobs (key),
            pause_after_ms INTEGER NOT NULL,
            PRIMARY KEY (manifest_id, unit, seq)
        );
        CREATE INDEX manifest_jobs_by_key ON manifest_jobs (job_key, manifest_id);
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            argv TEXT NOT NULL,
            started_utc TEXT NOT NULL,
            finished_utc TEXT,
            exit_code INTEGER
        );
        -- One row per lease; its token is the fencing token the lease carries.
        CREATE TABLE attempts (
            token INTEGER PRIMARY KEY AUTOINCREMENT,
            job_key TEXT NOT NULL REFERENCES jobs (key),
            run_id INTEGER REFERENCES runs (id),
            worker TEXT NOT NULL,
            device TEXT NOT NULL,
            started_utc TEXT NOT NULL,
            finished_utc TEXT,
            outcome TEXT,
            render_ms INTEGER,
            cost_usd REAL,
            error TEXT
        );
        CREATE INDEX attempts_by_job ON attempts (job_key);
        CREATE TABLE outputs (
            path TEXT PRIMARY KEY,
            manifest_id INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
            unit INTEGER,
            format TEXT NOT NULL,
            inputs_sha256 TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            duration_ms INTEGER NOT NULL,
            written_utc TEXT NOT NULL
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            utc TEXT NOT NULL,
            kind TEXT NOT NULL,
            job_key TEXT,
            manifest_id INTEGER,
            detail TEXT
        );
        """
    )


@migrations()
def m002_render_info(db: Database) -> None:
    """What the engine said about a render (QA duration ratio, seed used, batch, device)."""
    db.execute("ALTER TABLE jobs ADD COLUMN info TEXT")
    db.execute("ALTER TABLE attempts ADD COLUMN info TEXT")


@migrations()
def m003_spend(db: Database) -> None:
    """Remote spend: one reservation per create, reserved before it and settled after it."""
    db.executescript(
        """
        CREATE TABLE reservations (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs (id),
            job_key TEXT NOT NULL REFERENCES jobs (key),
            token INTEGER,
            model TEXT NOT NULL,
            input TEXT NOT NULL,
            reserved_usd REAL NOT NULL,
            reserved_s REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'settled')),
            prediction_id TEXT,
            day TEXT NOT NULL,
            created_utc TEXT NOT NULL,
            settled_usd REAL,
            predict_ms INTEGER,
            outcome TEXT,
            settled_utc TEXT
        );
        CREATE INDEX reservations_by_state ON reservations (state);
        CREATE INDEX reservations_by_run ON reservations (run_id);
        CREATE INDEX reservations_by_day ON reservations (day);
        CREATE TABLE uploads (
            sha256 TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            expires_utc TEXT,
            created_utc TEXT NOT NULL
        );
        ALTER TABLE attempts ADD COLUMN predict_ms INTEGER;
        """
    )


@migrations()
def m004_integrity(db: Database) -> None:
    """Size and mtime of every published file (a cheap check before a hash), transient
    back-off (not charged), and assembly failures per output file."""
    db.executescript(
        """
        ALTER TABLE jobs ADD COLUMN size INTEGER;
        ALTER TABLE jobs ADD COLUMN mtime_ns INTEGER;
        ALTER TABLE jobs ADD COLUMN not_before_utc TEXT;
        ALTER TABLE jobs ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE outputs ADD COLUMN size INTEGER;
        ALTER TABLE outputs ADD COLUMN mtime_ns INTEGER;
        CREATE TABLE output_failures (
            path TEXT PRIMARY KEY,
            manifest_id INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
            unit INTEGER,
            format TEXT NOT NULL,
            error TEXT NOT NULL,
            run_id INTEGER REFERENCES runs (id),
            failed_utc TEXT NOT NULL
        );
        """
    )


@migrations()
def m005_spend_by_hour(db: Database) -> None:
    """The hourly cap sums reservations by creation time at every reserve."""
    db.execute("CREATE INDEX reservations_by_created ON reservations (created_utc)")


@migrations()
def m006_window(db: Database) -> None:
    """Claim order for nightly windows: a manifest's priority (from its YAML, set every run) and
    how many runs in a row it waited with work left and got none (its age, against starving)."""
    db.executescript(
        """
        ALTER TABLE manifests ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE manifests ADD COLUMN waited_runs INTEGER NOT NULL DEFAULT 0;
        """
    )


@migrations()
def m007_timings(db: Database) -> None:
    """How long the work around the renders takes, for `cost`'s wall time: each worker's
    start-up and engine load, each master or output file assembly built, and a render's
    engine time apart from its write."""
    db.executescript(
        """
        ALTER TABLE attempts ADD COLUMN engine_ms INTEGER;
        CREATE TABLE loads (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs (id),
            engine TEXT NOT NULL,
            model TEXT NOT NULL,
            device TEXT NOT NULL,
            startup_ms INTEGER NOT NULL,
            load_ms INTEGER NOT NULL,
            utc TEXT NOT NULL
        );
        CREATE TABLE encodes (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs (id),
            format TEXT NOT NULL,
            audio_ms INTEGER NOT NULL,
            build_ms INTEGER NOT NULL,
            utc TEXT NOT NULL
        );
        """
    )


_ISO = "%Y-%m-%dT%H:%M:%S.%fZ"
HOUR_S = 3600.0  # the hourly spend cap's window
# Later than any real time: a job deferred "until the next run", which start_run clears.
_NOT_THIS_RUN = "9999-12-31T23:59:59.999999Z"


class JobState(str, Enum):
    """A job's state in the ledger (the `jobs.state` column holds the value)."""

    PENDING = "pending"  # waiting for a claim (or for its set-aside delay)
    LEASED = "leased"  # claimed under a token: rendering, queued, or in flight remotely
    DONE = "done"  # published: its file is where out_path says, with its sha256
    FAILED = "failed"  # out of attempts, or a permanent cause: waits for `retry`

    def __str__(self) -> str:
        return self.value


def utc_iso(at: float) -> str:
    """Fixed-width ISO text, so string comparison in SQL is time comparison."""
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime(_ISO)


@dataclass(frozen=True)
class JobRow:
    key: str
    kind: str
    engine: str
    model: str
    request: dict[str, Any]
    chars: int
    est_ms: int


@dataclass(frozen=True)
class PlanRow:
    unit: int
    seq: int
    key: str
    pause_after_ms: int


@dataclass(frozen=True)
class ManifestRecord:
    path: str
    kind: str
    title: str
    slug: str
    source_sha256: str
    profile: str
    plan_sha256: str
    assembly: dict[str, Any]


@dataclass
class PlanDiff:
    """What planning a manifest changes. `new` jobs are rendered; `reused` ones are in the cache."""

    new: int = 0
    reused: int = 0
    unchanged: int = 0
    dropped: int = 0
    manifest_changed: bool = False

    @property
    def changed_anything(self) -> bool:
        return self.manifest_changed or bool(self.new or self.reused or self.dropped)


@dataclass(frozen=True)
class Lease:
    key: str
    token: int
    kind: str
    engine: str
    model: str
    request: dict[str, Any]
    est_ms: int


@dataclass(frozen=True)
class Publication:
    """A finished file waiting to be published under its lease."""

    lease: Lease
    tmp: Path
    final: Path
    sha256: str
    duration_ms: int
    render_ms: int
    cost_usd: float | None = None
    worker: str | None = None  # who rendered it, where the lease was claimed for a pool
    device: str | None = None
    info: dict[str, Any] | None = None  # the engine's notes on the render
    # The engine's own time, without the write that overlaps the next render: what holds the
    # device up, and what `cost` times a render by.
    engine_ms: int | None = None


@dataclass(frozen=True)
class DeviceUse:
    device: str
    done: int
    failed: int
    busy_ms: int
    audio_ms: int


@dataclass(frozen=True)
class StateCount:
    manifest_id: int
    state: JobState
    jobs: int
    chars: int
    est_ms: int
    duration_ms: int


@dataclass
class ManifestInfo:
    id: int
    path: str
    kind: str
    title: str
    slug: str
    profile: str
    plan_sha256: str
    assembly: dict[str, Any]
    planned_utc: str


@dataclass(frozen=True)
class UnitJob:
    seq: int
    key: str
    state: JobState
    pause_after_ms: int
    out_path: str | None
    sha256: str | None
    duration_ms: int | None


@dataclass(frozen=True)
class ChunkRecord:
    key: str
    path: Path
    sha256: str
    stamp: FileStamp | None  # None: published before stamps were recorded


@dataclass(frozen=True)
class AdoptedChunk:
    key: str
    path: Path
    sha256: str
    stamp: FileStamp
    duration_ms: int


@dataclass(frozen=True)
class UnreferencedJob:
    """A job no plan uses: `path` is its recorded chunk file, `paid` that a reservation names
    it (its row is a money record's reference and stays)."""

    key: str
    path: Path | None
    size: int | None
    paid: bool


@dataclass(frozen=True)
class OutputRecord:
    path: str
    manifest_id: int
    unit: int | None
    fmt: str
    inputs_sha256: str
    sha256: str
    duration_ms: int
    stamp: FileStamp | None


@dataclass(frozen=True)
class OutputFailure:
    path: str
    manifest_id: int
    unit: int | None
    fmt: str
    error: str


@dataclass(frozen=True)
class SpendCaps:
    """Caps one reservation must fit under, with what is already settled or reserved."""

    run_usd: float | None = None  # every cap that applies to this run (--max-spend, profile)
    day_usd: float | None = None  # the profile's cap over all runs of one UTC day
    # The profile's cap over all runs of any 60 minutes: a rolling hour, so two overlapping
    # batches either side of a clock hour's turn cannot spend twice the cap in 60 minutes.
    hour_usd: float | None = None


@dataclass(frozen=True)
class RenderSamples:
    """Finished local renders of one engine, model and device type (calibration)."""

    engine: str
    model: str
    device: str  # the worker's device type: cuda or cpu
    count: int
    render_ms: int  # device time: the engine's share of a batched call (older rows: + write)
    audio_ms: int
    est_ms: int = 0  # what the planner estimated for the same jobs' audio


@dataclass(frozen=True)
class PredictSamples:
    """Settled, successful predictions of one Replicate model (calibration)."""

    model_ref: str
    count: int
    predict_ms: int
    est_audio_ms: int  # the audio the jobs asked for: what the predict-time model is fed


@dataclass(frozen=True)
class LoadSamples:
    """Measured worker start-ups and engine loads of one engine, model and device type."""

    engine: str
    model: str
    device: str  # cuda or cpu
    count: int
    startup_ms: int  # process start to ready (Python, imports), summed
    load_ms: int  # the engine's load (weights to the device), summed


@dataclass(frozen=True)
class EncodeSamples:
    """Measured assembly builds of one format (`master`: a unit's master file)."""

    fmt: str
    count: int
    audio_ms: int
    build_ms: int


# Calibration reads the most recent rows only: a machine's speed is what it is now.
RECENT_TIMINGS = 50


@dataclass(frozen=True)
class ActualRow:
    """Spend and device time of one group of `--actual` (a run, a UTC day, a manifest or a
    profile)."""

    group: str
    settled_usd: float = 0.0
    predictions: int = 0  # settled reservations
    open_usd: float = 0.0  # still reserved: not spent yet, but counting against the caps
    open_count: int = 0
    device_ms: int = 0  # local engines' render time, summed over devices
    renders: int = 0  # local attempts that rendered


ACTUAL_GROUPS = ("run", "day", "manifest", "profile")


@dataclass(frozen=True)
class OpenReservation:
    id: int
    run_id: int | None
    job_key: str
    model: str
    input: dict[str, Any]
    reserved_usd: float
    reserved_s: float
    prediction_id: str | None
    created_utc: str


class CapReached(Exception):
    """A reservation does not fit under a cap; nothing was written."""

    def __init__(self, cap: str, limit: float, committed: float, wanted: float) -> None:
        super().__init__(
            f"the {cap} spend cap of ${limit:.2f} is reached: ${committed:.4f} spent or reserved,"
            f" the next job needs up to ${wanted:.4f}"
        )
        self.cap = cap


class StaleLease(Exception):
    """The lease's token is no longer the job's: its output must be discarded."""


class Ledger:
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

    @classmethod
    def for_reading(cls, path: Path) -> Ledger:
        return cls(path, read_only=True)

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

    def __enter__(self) -> Ledger:
        return self

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

    # ------------------------------------------------------------------ planning

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
        return PlanDiff(
            new=len(fresh - known),
            reused=len(fresh & known),
            unchanged=len(new_keys & old_keys),
            dropped=len(old_keys - new_keys),
            manifest_changed=old is None or old["plan_sha256"] != record.plan_sha256,
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
                    (j.key, j.kind, j.engine, j.model, _dumps(j.request), j.chars, j.est_ms, now)
                    for j in jobs
                ),
            )
            manifest_id = self._upsert_manifest(record, now)
            conn.execute("DELETE FROM manifest_jobs WHERE manifest_id = ?", (manifest_id,))
            conn.executemany(
                "INSERT INTO manifest_jobs (manifest_id, unit, seq, job_key, pause_after_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                ((manifest_id, r.unit, r.seq, r.key, r.pause_after_ms) for r in rows),
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
            _dumps(record.assembly),
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

    def _existing_keys(self, keys: set[str]) -> set[str]:
        found: set[str] = set()
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            batch = ordered[start : start + 500]
            marks = ",".join("?" * len(batch))
            cursor = self.conn.execute(f"SELECT key FROM jobs WHERE key IN ({marks})", batch)
            found.update(row[0] for row in cursor)
        return found

    # ------------------------------------------------------------------ runs

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
                (os.getpid(), socket.gethostname(), _dumps(list(argv)), now),
            ).fetchone()
            return int(row["id"])

    def finish_run(self, run_id: int, exit_code: int) -> None:
        with self.immediate() as conn:
            conn.execute(
                "UPDATE runs SET finished_utc = ?, exit_code = ? WHERE id = ?",
                (self.now(), exit_code, run_id),
            )

    # ------------------------------------------------------------------ leases

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
           claim after claim.)"""
        now = self.clock()
        filters = ["j.state = 'pending'", "(j.not_before_utc IS NULL OR j.not_before_utc <= ?)"]
        params: list[Any] = [utc_iso(now)]
        if kinds:
            filters.append(f"j.kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
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
        ranked_in = (None if manifest_ids is None else tuple(manifest_ids), tuple(kinds or ()))
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
                        request=json.loads(row["request"]),
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
                        _json(i.info),
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
                        _json(i.info),
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
            not_before = utc_iso(now + delay_s) if delay_s is not None else _NOT_THIS_RUN
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
        row = self.conn.execute("SELECT deferrals FROM jobs WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row["deferrals"])

    def next_deferred(self, manifest_ids: Sequence[int]) -> float | None:
        """When the earliest job set aside for a while in this run may be claimed again (epoch
        seconds); None when no job of these manifests waits so."""
        marks = ",".join("?" * len(manifest_ids))
        row = self.conn.execute(
            "SELECT MIN(j.not_before_utc) FROM jobs j WHERE j.state = 'pending'"
            " AND j.not_before_utc IS NOT NULL AND j.not_before_utc < ? AND EXISTS (SELECT 1"
            f" FROM manifest_jobs mj WHERE mj.job_key = j.key AND mj.manifest_id IN ({marks}))",
            (_NOT_THIS_RUN, *manifest_ids),
        ).fetchone()
        if row[0] is None:
            return None
        return datetime.strptime(row[0], _ISO).replace(tzinfo=timezone.utc).timestamp()

    def _holds(self, conn: sqlite3.Connection, lease: Lease) -> bool:
        row = conn.execute(
            "SELECT state, lease_token FROM jobs WHERE key = ?", (lease.key,)
        ).fetchone()
        held = row is not None and row["state"] == JobState.LEASED
        return held and row["lease_token"] == lease.token

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

    # ------------------------------------------------------------------ reading

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
                assembly=json.loads(row["assembly"]),
                planned_utc=row["planned_utc"],
            )
            for row in self.conn.execute(sql + " ORDER BY id", params)
        ]
        return infos

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

    def unit_jobs(self, manifest_id: int, unit: int) -> list[UnitJob]:
        cursor = self.conn.execute(
            "SELECT mj.seq, mj.job_key, mj.pause_after_ms, j.state, j.out_path, j.sha256,"
            " j.duration_ms FROM manifest_jobs mj JOIN jobs j ON j.key = mj.job_key"
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
                stamp=_stamp(row["size"], row["mtime_ns"]),
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

    # ------------------------------------------------------------------ retry

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

    # ------------------------------------------------------------------ outputs

    def output(self, path: str) -> OutputRecord | None:
        row = self.conn.execute("SELECT * FROM outputs WHERE path = ?", (path,)).fetchone()
        return None if row is None else _output_record(row)

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
        return [_output_record(row) for row in cursor]

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

    # ------------------------------------------------------------------ garbage collection

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

    def quick_check(self) -> str:
        """SQLite's PRAGMA quick_check: "ok", or the first problem it reports. Reads only."""
        row = self.conn.execute("PRAGMA quick_check").fetchone()
        return str(row[0])

    def job_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    # ------------------------------------------------------------------ spend

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
                    _dumps(model_input),
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

    def run_row(self, run_id: int) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return {} if row is None else dict(row)

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

    # ------------------------------------------------------------------ misc

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
            (self.now(), kind, job_key, manifest_id, None if detail is None else _dumps(detail)),
        )

    # ------------------------------------------------------------------ cost estimates

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

    def integrity_ok(self) -> bool:
        row = self.conn.execute("PRAGMA integrity_check").fetchone()
        return bool(row[0] == "ok")


def _stamp(size: int | None, mtime_ns: int | None) -> FileStamp | None:
    return None if size is None or mtime_ns is None else FileStamp(size, mtime_ns)


def _output_record(row: sqlite3.Row) -> OutputRecord:
    return OutputRecord(
        path=row["path"],
        manifest_id=row["manifest_id"],
        unit=row["unit"],
        fmt=row["format"],
        inputs_sha256=row["inputs_sha256"],
        sha256=row["sha256"],
        duration_ms=row["duration_ms"],
        stamp=_stamp(row["size"], row["mtime_ns"]),
    )


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


def _json(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
