"""All SQL lives here, a module per concern, one `Ledger` class over them all:

- `schema`: the migrations; `records`: what the queries take and return, the job states;
- `core`: the connection (read-only or migrated, `BEGIN IMMEDIATE`, the clock, events);
- `plans`: manifests and their plans; `jobs`: claims, leases, the fenced publish, failures,
  set-asides, retries and what each job is; `runs`: runs, load and encode timings, samples
  for `cost`; `outputs`: published files; `spend`: budget reservations and uploads (the
  Replicate backend's); `cache`: what `gc` may drop; `routes`: which jobs of a hybrid run went
  to the spill-over backend, and why.

Concurrency rules (FIELD-NOTES.md): every read-then-write runs in `BEGIN IMMEDIATE`, so a claim
takes the write lock before it reads and never meets SQLITE_BUSY half way; busy_timeout covers the
wait. The connection is in autocommit mode (isolation_level=None) so no transaction opens by
accident and holds the lock.
"""

from __future__ import annotations

from pathlib import Path

from songbatch.ledger.cache import CacheQueries
from songbatch.ledger.core import LedgerBase, damaged_ledger_guard
from songbatch.ledger.jobs import JobsQueries
from songbatch.ledger.outputs import OutputsQueries
from songbatch.ledger.plans import PlansQueries
from songbatch.ledger.records import (
    ACTUAL_GROUPS,
    HOUR_S,
    RECENT_TIMINGS,
    ActualRow,
    AdoptedChunk,
    CapReached,
    ChunkRecord,
    Clock,
    DeviceUse,
    EncodeSamples,
    JobRow,
    JobState,
    Lease,
    LoadSamples,
    ManifestInfo,
    ManifestRecord,
    OpenReservation,
    OutputFailure,
    OutputRecord,
    PlanDiff,
    PlanRow,
    PredictSamples,
    Publication,
    RenderSamples,
    Route,
    RunRecord,
    SpendCaps,
    SpillReason,
    StaleLease,
    StateCount,
    UnitJob,
    UnreferencedJob,
    utc_iso,
)
from songbatch.ledger.routes import RoutesQueries, SpillJob, SpillUnit
from songbatch.ledger.runs import RunsQueries
from songbatch.ledger.schema import migrations
from songbatch.ledger.spend import SpendQueries


class Ledger(
    PlansQueries,
    JobsQueries,
    RunsQueries,
    OutputsQueries,
    SpendQueries,
    CacheQueries,
    RoutesQueries,
):
    """One ledger connection, its queries grouped by concern (a module each)."""

    @classmethod
    def for_reading(cls, path: Path) -> Ledger:
        return cls(path, read_only=True)

    def __enter__(self) -> Ledger:
        return self


__all__ = [
    "ACTUAL_GROUPS",
    "HOUR_S",
    "RECENT_TIMINGS",
    "ActualRow",
    "AdoptedChunk",
    "CapReached",
    "ChunkRecord",
    "Clock",
    "DeviceUse",
    "EncodeSamples",
    "JobRow",
    "JobState",
    "Lease",
    "Ledger",
    "LedgerBase",
    "LoadSamples",
    "ManifestInfo",
    "ManifestRecord",
    "OpenReservation",
    "OutputFailure",
    "OutputRecord",
    "PlanDiff",
    "PlanRow",
    "PredictSamples",
    "Publication",
    "RenderSamples",
    "Route",
    "RunRecord",
    "SpendCaps",
    "SpillJob",
    "SpillReason",
    "SpillUnit",
    "StaleLease",
    "StateCount",
    "UnitJob",
    "UnreferencedJob",
    "damaged_ledger_guard",
    "migrations",
    "utc_iso",
]
