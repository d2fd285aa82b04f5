"""A run's summary: what it did, what is left, how busy each device was, what it spent, the exit
code and why. Built from the ledger with the same queries `status` uses (so the two agree), and
written to `.songbatch/runs/<run-id>.json` for scripts and log shippers."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from songbatch.fsutil import fsync_dir, fsync_file
from songbatch.ledger import JobState, Ledger, ManifestInfo

STATES = tuple(state.value for state in JobState)

# What each exit code means, for the summary's `reason` when nothing more specific is known.
EXIT_REASONS = {
    0: "all planned work done, every planned file written",
    1: "some jobs or files failed, or jobs were left pending after transient faults",
    2: "bad input or usage",
    3: "stopped at the budget cap",
    4: "stopped at the time limit with work left",
    70: "internal error",
    75: "another run holds the ledger",
    130: "interrupted",
}


@dataclass
class ManifestFigures:
    path: str
    title: str
    jobs: dict[str, int]  # per state, as `songbatch status` counts them
    est_ms: int
    rendered_ms: int


@dataclass
class DeviceFigures:
    done: int
    failed: int
    busy_s: float
    busy_share: float  # of the run's wall time
    audio_minutes: float


@dataclass
class RunSummary:
    run_id: int
    started_utc: str
    finished_utc: str | None
    wall_s: float
    exit_code: int
    reason: str
    done_this_run: int
    failed_this_run: int
    audio_minutes_this_run: float
    jobs: dict[str, int]  # the run's manifests together, per state
    left: int  # pending + leased
    files_written: int
    spend_usd: float
    reserved_usd: float  # still open (unsettled) reservations of this run
    spilled: dict[str, int] = field(default_factory=dict)  # sent to a spill-over, by reason
    devices: dict[str, DeviceFigures] = field(default_factory=dict)
    manifests: list[ManifestFigures] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_summary(
    ledger: Ledger,
    run_id: int,
    infos: list[ManifestInfo],
    *,
    exit_code: int,
    reason: str | None,
    files_written: int,
) -> RunSummary:
    run = ledger.run(run_id)
    started = "" if run is None else run.started_utc
    finished = None if run is None else run.finished_utc
    wall_s = _seconds_between(started, finished) if finished else 0.0
    totals = dict.fromkeys(STATES, 0)
    manifests = []
    for info in infos:
        jobs = dict.fromkeys(STATES, 0)
        for count in ledger.state_counts([info.id]):
            jobs[count.state] = count.jobs
        for state, n in jobs.items():
            totals[state] += n
        est_ms, rendered_ms = ledger.manifest_length(info.id)
        manifests.append(ManifestFigures(info.path, info.title, jobs, est_ms, rendered_ms))
    devices = {}
    for use in ledger.run_devices(run_id):
        devices[use.device] = DeviceFigures(
            done=use.done,
            failed=use.failed,
            busy_s=round(use.busy_ms / 1000, 3),
            busy_share=round(use.busy_ms / 1000 / wall_s, 4) if wall_s > 0 else 0.0,
            audio_minutes=round(use.audio_ms / 60000, 3),
        )
    spent, reserved = ledger.spend(run_id=run_id)
    return RunSummary(
        run_id=run_id,
        started_utc=started,
        finished_utc=finished,
        wall_s=round(wall_s, 3),
        exit_code=exit_code,
        reason=reason or EXIT_REASONS.get(exit_code, f"exit code {exit_code}"),
        done_this_run=sum(d.done for d in devices.values()),
        failed_this_run=sum(d.failed for d in devices.values()),
        audio_minutes_this_run=round(sum(d.audio_minutes for d in devices.values()), 3),
        jobs=totals,
        left=totals["pending"] + totals["leased"],
        files_written=files_written,
        spend_usd=round(spent, 6),
        reserved_usd=round(reserved, 6),
        spilled=ledger.spilled_in_run(run_id),
        devices=devices,
        manifests=manifests,
    )


def write_summary(runs_dir: Path, summary: RunSummary) -> Path:
    """Atomically: a reader (a log shipper, a cron wrapper) sees the whole file or none."""
    runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = runs_dir / f"{summary.run_id}.json"
    tmp = runs_dir / f".{summary.run_id}.json.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(summary.as_dict(), indent=2, ensure_ascii=False) + "\n")
        fsync_file(tmp)
        os.replace(tmp, final)
        fsync_dir(runs_dir)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def _seconds_between(start: str, end: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds()
