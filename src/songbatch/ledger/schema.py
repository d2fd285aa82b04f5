"""The ledger's schema: sqlite-utils migrations, applied in order once per ledger."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

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


@migrations()
def m008_routes(db: Database) -> None:
    """Hybrid runs: a job of a local profile sent to its spill-over backend (route 'spill') and
    why (deadline, failures, unavailable). NULL: the job's own profile renders it."""
    db.executescript(
        """
        ALTER TABLE jobs ADD COLUMN route TEXT;
        ALTER TABLE jobs ADD COLUMN route_reason TEXT;
        """
    )


@migrations()
def m009_written(db: Database) -> None:
    """A plan row's written words where its job's text says them another way (subtitles show
    the book's text). NULL in rows planned before: their subtitles fall back to the job's text
    until the next plan writes the column."""
    db.execute("ALTER TABLE manifest_jobs ADD COLUMN written TEXT")
