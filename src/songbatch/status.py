"""What the ledger says about each manifest: jobs per state, audio rendered, outputs written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from songbatch.errors import InputError
from songbatch.gc import is_preview
from songbatch.integrity import FileState, check_chunks, check_file
from songbatch.ledger import JobState, Ledger, ManifestInfo, damaged_ledger_guard
from songbatch.outputs import planned_outputs
from songbatch.runlock import RunLock
from songbatch.workspace import Workspace

STATES = tuple(state.value for state in JobState)


@dataclass
class Verification:
    """`status --verify`: every recorded file hashed against the ledger."""

    chunks_checked: int = 0
    chunks_missing: int = 0
    chunks_damaged: int = 0
    outputs_checked: int = 0
    outputs_missing: list[str] = field(default_factory=list)
    outputs_damaged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.chunks_missing
            or self.chunks_damaged
            or self.outputs_missing
            or self.outputs_damaged
        )


@dataclass(frozen=True)
class JobProblem:
    """A job that failed, or was set aside by a transient fault: its key, its unit's title and
    the error the ledger recorded."""

    job: str
    unit: str
    error: str | None


@dataclass(frozen=True)
class OutputProblem:
    """A planned file the last assembly could not write, and why."""

    path: str
    error: str


@dataclass
class ManifestStatus:
    path: str
    title: str
    kind: str
    profile: str
    planned_utc: str
    jobs: dict[str, int] = field(default_factory=dict)
    chars: int = 0
    est_ms: int = 0
    rendered_ms: int = 0
    outputs: list[str] = field(default_factory=list)
    failed: list[JobProblem] = field(default_factory=list)
    set_aside: list[JobProblem] = field(default_factory=list)  # pending after a transient
    output_failures: list[OutputProblem] = field(default_factory=list)
    # Jobs sent to the profile's spill-over backend (a hybrid run), by reason.
    spilled: dict[str, int] = field(default_factory=dict)
    verification: Verification | None = None

    @property
    def total(self) -> int:
        return sum(self.jobs.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"total": self.total}


def manifest_status(
    workspace: Workspace, paths: Sequence[Path] = (), *, verify: bool = False
) -> list[ManifestStatus]:
    """Read-only: the ledger is opened with SQLite's mode=ro and never migrated; a workspace
    with no ledger yet has nothing to report (and gets none made). A manifest named here that
    this workspace never planned is an InputError."""
    if not workspace.ledger_path.exists():
        _never_planned(workspace, paths, set())
        return []
    with Ledger.for_reading(workspace.ledger_path) as ledger, damaged_ledger_guard(ledger.path):
        infos = _named(ledger, workspace, paths)
        return [_status(ledger, info, verify=verify) for info in infos]


def _named(ledger: Ledger, workspace: Workspace, paths: Sequence[Path]) -> list[ManifestInfo]:
    """The manifests these paths name (every planned one when none), or an InputError naming
    the first that was never planned here."""
    wanted = [str(Path(p).resolve()) for p in paths]
    # A killed preview's row (removed by the next render) was never a planned manifest.
    infos = [info for info in ledger.manifests(wanted or None) if not is_preview(info.path)]
    _never_planned(workspace, paths, {info.path for info in infos})
    return infos


def _never_planned(workspace: Workspace, paths: Sequence[Path], planned: set[str]) -> None:
    for path in paths:
        if str(Path(path).resolve()) not in planned:
            raise InputError(
                f"{path}: never planned in the workspace {workspace.root}: `songbatch render"
                f" {path}` plans and renders it (is --workspace right?)"
            )


def _status(ledger: Ledger, info: ManifestInfo, *, verify: bool) -> ManifestStatus:
    status = ManifestStatus(
        path=info.path,
        title=info.title,
        kind=info.kind,
        profile=info.profile,
        planned_utc=info.planned_utc,
        jobs=dict.fromkeys(STATES, 0),
    )
    for count in ledger.state_counts([info.id]):
        status.jobs[count.state] = count.jobs
        status.chars += count.chars
    status.est_ms, status.rendered_ms = ledger.manifest_length(info.id)
    units = info.assembly.units
    current = {str(file.path) for file in planned_outputs(info.assembly)}
    status.outputs = [r.path for r in ledger.outputs(info.id) if r.path in current]
    for key, _mid, unit, error in ledger.failed_jobs([info.id]):
        status.failed.append(JobProblem(key, units[unit].title, error))
    for key, _mid, unit, error in ledger.set_aside_jobs([info.id]):
        status.set_aside.append(JobProblem(key, units[unit].title, error))
    status.spilled = ledger.spilled_jobs([info.id]).get(info.id, {})
    for failure in ledger.output_failures([info.id]):
        if failure.path in current:
            status.output_failures.append(OutputProblem(failure.path, failure.error))
    if verify:
        status.verification = _verify(ledger, info, current)
    return status


def _verify(ledger: Ledger, info: ManifestInfo, current: set[str]) -> Verification:
    chunks = check_chunks(ledger, [info.id], full=True)
    result = Verification(
        chunks_checked=chunks.checked,
        chunks_missing=len(chunks.missing),
        chunks_damaged=len(chunks.damaged),
    )
    for record in ledger.outputs(info.id):
        if record.path not in current:
            continue
        result.outputs_checked += 1
        state = check_file(Path(record.path), record.sha256, record.stamp, full=True).state
        if state is FileState.MISSING:
            result.outputs_missing.append(record.path)
        elif state is FileState.DAMAGED:
            result.outputs_damaged.append(record.path)
    return result


def retry_jobs(workspace: Workspace, paths: Sequence[Path], *, force: bool) -> int:
    """Failed jobs of these manifests (all planned ones when none named) go back to pending.
    Under the run lock: a render in progress owns the ledger's jobs (LedgerBusy, exit 75)."""
    if not workspace.ledger_path.exists():
        _never_planned(workspace, paths, set())
        return 0
    with (
        RunLock(workspace.lock_path),
        Ledger(workspace.ledger_path) as ledger,
        damaged_ledger_guard(ledger.path),
    ):
        ids = [info.id for info in _named(ledger, workspace, paths)]
        return ledger.retry(ids, force=force) if ids else 0
