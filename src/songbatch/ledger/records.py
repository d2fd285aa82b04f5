"""What the ledger's functions take and return: plain records, the job states, times as ISO text."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from songbatch.assemblyspec import AssemblySpec
from songbatch.engines.base import JobRequest
from songbatch.fsutil import FileStamp

Clock = Callable[[], float]


ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


HOUR_S = 3600.0  # the hourly spend cap's window


# Later than any real time: a job deferred "until the next run", which start_run clears.
NOT_THIS_RUN = "9999-12-31T23:59:59.999999Z"


class JobState(str, Enum):
    """A job's state in the ledger (the `jobs.state` column holds the value)."""

    PENDING = "pending"  # waiting for a claim (or for its set-aside delay)
    LEASED = "leased"  # claimed under a token: rendering, queued, or in flight remotely
    DONE = "done"  # published: its file is where out_path says, with its sha256
    FAILED = "failed"  # out of attempts, or a permanent cause: waits for `retry`

    def __str__(self) -> str:
        return self.value


class Route(str, Enum):
    """Which backend of a hybrid run a claim takes jobs for (the `jobs.route` column)."""

    OWN = "own"  # the job's own profile: `route` is NULL
    SPILL = "spill"  # sent to the profile's spill-over backend

    def __str__(self) -> str:
        return self.value


class SpillReason(str, Enum):
    """Why a job of a hybrid run went to the spill-over backend (`jobs.route_reason`)."""

    DEADLINE = "deadline"  # the local devices could not finish before the time limit
    FAILURES = "failures"  # it failed locally as often as the profile allows before spilling
    UNAVAILABLE = "unavailable"  # no local device can run its engine

    def __str__(self) -> str:
        return self.value


def route_filter(route: Route) -> str:
    """The claim's condition on `jobs j` for `route` (constant SQL, no parameters)."""
    return "j.route IS NULL" if route is Route.OWN else "j.route = 'spill'"


def utc_iso(at: float) -> str:
    """Fixed-width ISO text, so string comparison in SQL is time comparison."""
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime(ISO_FORMAT)


@dataclass(frozen=True)
class JobRow:
    key: str
    kind: str
    engine: str
    model: str
    request: JobRequest
    chars: int
    est_ms: int


@dataclass(frozen=True)
class PlanRow:
    unit: int
    seq: int
    key: str
    pause_after_ms: int
    # The book's own words this chunk says, for its subtitles, where they differ from the
    # job's text ("Dr. Smith paid $12" for "Doctor Smith paid twelve dollars"); "" where it
    # only goes on saying what the chunk before holds; None: the job's text is what was
    # written (or the row was planned before songbatch kept them).
    written: str | None = None


@dataclass(frozen=True)
class ManifestRecord:
    path: str
    kind: str
    title: str
    slug: str
    source_sha256: str
    profile: str
    plan_sha256: str
    assembly: AssemblySpec


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
    request: JobRequest
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
class RunRecord:
    """A run's row: when it started and finished (None while it runs, or if it died), and
    its exit code (None until it finished)."""

    id: int
    started_utc: str
    finished_utc: str | None
    exit_code: int | None


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
    assembly: AssemblySpec
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
    written: str | None = None  # its plan row's (PlanRow.written)


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


def file_stamp(size: int | None, mtime_ns: int | None) -> FileStamp | None:
    return None if size is None or mtime_ns is None else FileStamp(size, mtime_ns)


def output_record(row: sqlite3.Row) -> OutputRecord:
    return OutputRecord(
        path=row["path"],
        manifest_id=row["manifest_id"],
        unit=row["unit"],
        fmt=row["format"],
        inputs_sha256=row["inputs_sha256"],
        sha256=row["sha256"],
        duration_ms=row["duration_ms"],
        stamp=file_stamp(row["size"], row["mtime_ns"]),
    )


def json_or_null(value: Any) -> str | None:
    return None if value is None else dumps_json(value)


def dumps_json(value: Any) -> str:
    """JSON as the ledger stores it: keys sorted, compact, Unicode kept (stored specs and
    requests are hashed as these bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stored_request(text: str) -> JobRequest:
    """A `jobs.request` as stored (JobRequest.to_dict's JSON, by `dumps_json`)."""
    return JobRequest.from_dict(json.loads(text))
