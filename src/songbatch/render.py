"""A render run: load and validate every manifest, take the run lock, plan into the ledger, run the
executor, assemble finished chapters and tracks as they complete, report.

Nothing is written before every manifest and profile has loaded cleanly, so bad input never
touches the ledger.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from songbatch.assemble import Assembler
from songbatch.engines import check_engine
from songbatch.engines.base import EngineSpec, Kind
from songbatch.errors import BudgetExceeded, EngineUnavailable, InputError, SongbatchError
from songbatch.events import Observer, RunEvent, ignore
from songbatch.executors.devices import DeviceSlot, parse_devices
from songbatch.executors.local import ExecutorSettings, LocalExecutor
from songbatch.executors.publishing import ExecutorSummary
from songbatch.executors.worker import spec_id
from songbatch.fsutil import sweep_temps
from songbatch.ledger import Ledger, ManifestInfo, PlanDiff
from songbatch.manifest import LoadedManifest, load_manifest
from songbatch.planner import Plan, commit_plan, plan_manifest
from songbatch.profiles import Profile, resolve_profile
from songbatch.runlock import RunLock
from songbatch.workspace import Workspace

if TYPE_CHECKING:
    from songbatch.remote.executor import RemoteHooks


@dataclass
class Planned:
    loaded: LoadedManifest
    profile: Profile
    plan: Plan


@dataclass
class RenderOptions:
    workspace: Workspace
    profile: str | None = None
    devices: str | None = None
    time_limit_s: float | None = None
    max_spend: float | None = None  # USD this run may spend on remote predictions
    argv: Sequence[str] = ()
    remote_hooks: RemoteHooks | None = None  # tests and benchmarks: virtual clock, fake API


@dataclass
class RenderReport:
    diffs: dict[str, PlanDiff] = field(default_factory=dict)
    summary: ExecutorSummary = field(default_factory=ExecutorSummary)
    outputs: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str, str | None]] = field(default_factory=list)  # book, unit, error
    assembly_errors: list[str] = field(default_factory=list)
    exit_code: int = 0
    stop_reason: str | None = None  # why a run stopped early (the budget cap)


def load_all(paths: Sequence[Path], profile: str | None, workspace: Workspace) -> list[Planned]:
    """Validate and plan every manifest in memory; raises on the first bad input."""
    planned = []
    for path in paths:
        loaded = load_manifest(path)
        chosen = resolve_profile(
            profile, loaded.manifest.profile, workspace, base_dir=loaded.path.parent
        )
        kind: Kind = "speech" if loaded.manifest.kind == "audiobook" else "music"
        if chosen.remote:
            _check_remote()
        else:
            check_engine(chosen.engine_spec(kind))
        planned.append(Planned(loaded, chosen, plan_manifest(loaded, chosen, workspace)))
    return planned


def _check_remote() -> None:
    """Before anything is written: the remote engine's package is importable."""
    import importlib.util

    if importlib.util.find_spec("replicate") is None:
        raise EngineUnavailable(
            "the replicate engine needs the 'replicate' package: pip install 'songbatch[replicate]'"
        )


def render(
    paths: Sequence[Path], options: RenderOptions, observer: Observer = ignore
) -> RenderReport:
    workspace = options.workspace
    if options.max_spend is not None and options.max_spend < 0:
        raise InputError(f"--max-spend {options.max_spend}: expected an amount in USD >= 0")
    planned = load_all(paths, options.profile, workspace)
    devices = options.devices or planned[0].profile.devices
    slots, warning = parse_devices(devices)
    with RunLock(workspace.lock_path), Ledger(workspace.ledger_path) as ledger:
        report = RenderReport()
        for item in planned:
            report.diffs[str(item.loaded.path)] = diff = commit_plan(ledger, item.plan, workspace)
            observer(RunEvent("planned", item.loaded.manifest.title, data=vars(diff)))
        run_id = ledger.start_run(list(options.argv))
        infos = ledger.manifests([str(item.loaded.path) for item in planned])
        _sweep(workspace, infos)
        missing = [
            key for key, path in ledger.done_files([i.id for i in infos]) if not path.exists()
        ]
        if missing:
            ledger.requeue_missing(missing)
            observer(
                RunEvent(
                    "warning", f"{len(missing)} rendered file(s) were missing: rendering again"
                )
            )
        if warning:
            observer(RunEvent("warning", warning))
        exit_code = 1
        try:
            _execute(ledger, workspace, planned, infos, slots, options, observer, report, run_id)
            exit_code = report.exit_code = _exit_code(report, ledger, infos)
        finally:
            ledger.finish_run(run_id, exit_code)
        return report


def _execute(
    ledger: Ledger,
    workspace: Workspace,
    planned: list[Planned],
    infos: list[ManifestInfo],
    slots: list[DeviceSlot],
    options: RenderOptions,
    observer: Observer,
    report: RenderReport,
    run_id: int,
) -> None:
    tracker = UnitTracker(ledger, infos)
    assembly = AssemblyThread(Ledger(ledger.path), workspace, observer, report)
    for info, unit in tracker.complete_units():
        assembly.submit(info, unit)
    profile = planned[0].profile
    deadline = None
    if options.time_limit_s is not None:
        deadline = time.monotonic() + options.time_limit_s
    observer(RunEvent("run-started", data={"jobs": tracker.remaining, "workers": len(slots)}))
    try:
        if tracker.remaining and profile.remote:
            report.summary = _run_remote(
                ledger, workspace, profile, infos, options, observer, run_id, tracker, assembly
            )
            report.stop_reason = getattr(report.summary, "stop_reason", None)
        elif tracker.remaining:
            executor = LocalExecutor(
                ledger,
                workspace,
                slots,
                _engine_specs(planned),
                run_id=run_id,
                manifest_ids=[info.id for info in infos],
                settings=ExecutorSettings(
                    lease_s=profile.lease_seconds,
                    max_failures=profile.max_attempts,
                    deadline=deadline,
                ),
                observer=observer,
                on_published=lambda key: _on_published(tracker, assembly, key),
            )
            report.summary = executor.run()
    finally:
        assembly.close()
    for info in infos:
        if info.kind == "audiobook" and tracker.manifest_complete(info):
            try:
                book = Assembler(ledger, workspace).assemble_book(info)
            except SongbatchError as exc:
                report.assembly_errors.append(f"{info.title}: {exc}")
                continue
            if book is not None:
                report.outputs.append(book)
                observer(RunEvent("output", str(book)))


def _run_remote(
    ledger: Ledger,
    workspace: Workspace,
    profile: Profile,
    infos: list[ManifestInfo],
    options: RenderOptions,
    observer: Observer,
    run_id: int,
    tracker: UnitTracker,
    assembly: AssemblyThread,
) -> ExecutorSummary:
    from songbatch.remote.executor import RemoteExecutor, RemoteHooks, RemoteSettings

    assert profile.replicate is not None  # the profile validator guarantees it
    hooks = options.remote_hooks or RemoteHooks()
    deadline = None
    if options.time_limit_s is not None:
        deadline = hooks.clock() + options.time_limit_s
    executor = RemoteExecutor(
        ledger,
        workspace,
        profile.replicate,
        run_id=run_id,
        manifest_ids=[info.id for info in infos],
        settings=RemoteSettings(
            max_failures=profile.max_attempts,
            lease_s=profile.lease_seconds,
            deadline=deadline,
            max_spend=options.max_spend,
        ),
        observer=observer,
        on_published=lambda key: _on_published(tracker, assembly, key),
        hooks=hooks,
    )
    return executor.run()


def _on_published(tracker: UnitTracker, assembly: AssemblyThread, key: str) -> None:
    for info, unit in tracker.job_done(key):
        assembly.submit(info, unit)


def _engine_specs(planned: list[Planned]) -> dict[str, EngineSpec]:
    specs: dict[str, EngineSpec] = {}
    for item in planned:
        kinds: tuple[Kind, ...] = ("speech", "music")
        for kind in kinds:
            spec = item.profile.engine_spec(kind)
            specs.setdefault(spec_id(spec.kind, spec.engine, spec.model), spec)
    return specs


def _sweep(workspace: Workspace, infos: list[ManifestInfo]) -> None:
    """With the run lock held no one else writes: every temp file is a dead run's leftover."""
    tmp = workspace.tmp_dir
    if tmp.is_dir():
        for entry in tmp.iterdir():
            entry.unlink()
    for info in infos:
        sweep_temps(Path(info.assembly["output_dir"]))
    sweep_temps(workspace.work_dir)


def _exit_code(report: RenderReport, ledger: Ledger, infos: list[ManifestInfo]) -> int:
    counts: Counter[str] = Counter()
    for count in ledger.state_counts([info.id for info in infos]):
        counts[count.state] += count.jobs
    by_id = {info.id: info for info in infos}
    for _key, manifest_id, unit, error in ledger.failed_jobs(list(by_id)):
        info = by_id[manifest_id]
        report.failed.append((info.title, info.assembly["units"][unit]["title"], error))
    if counts["failed"] or report.assembly_errors:
        return 1
    if counts["pending"] or counts["leased"]:
        if getattr(report.summary, "stopped_at_budget", False):
            return BudgetExceeded.exit_code
        return 4 if report.summary.stopped_at_deadline else 1
    return 0


class UnitTracker:
    """Counts each chapter's or track's unfinished jobs, to assemble it the moment it is whole."""

    def __init__(self, ledger: Ledger, infos: list[ManifestInfo]) -> None:
        self.infos = {info.id: info for info in infos}
        self._left: dict[tuple[int, int], int] = {}
        self._units_of: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for info in infos:
            for unit in range(len(info.assembly["units"])):
                for job in ledger.unit_jobs(info.id, unit):
                    if job.state != "done":
                        self._left[(info.id, unit)] = self._left.get((info.id, unit), 0) + 1
                        self._units_of[job.key].append((info.id, unit))
                    else:
                        self._left.setdefault((info.id, unit), 0)

    @property
    def remaining(self) -> int:
        return sum(self._left.values())

    def complete_units(self) -> list[tuple[ManifestInfo, int]]:
        return [(self.infos[mid], unit) for (mid, unit), left in self._left.items() if left == 0]

    def job_done(self, key: str) -> list[tuple[ManifestInfo, int]]:
        finished = []
        for mid, unit in self._units_of.pop(key, []):
            self._left[(mid, unit)] -= 1
            if self._left[(mid, unit)] == 0:
                finished.append((self.infos[mid], unit))
        return finished

    def manifest_complete(self, info: ManifestInfo) -> bool:
        return all(left == 0 for (mid, _), left in self._left.items() if mid == info.id)


class AssemblyThread:
    """Assembles finished units in the background so the coordinator keeps feeding devices."""

    def __init__(
        self, ledger: Ledger, workspace: Workspace, observer: Observer, report: RenderReport
    ) -> None:
        self._ledger = ledger
        self._assembler = Assembler(ledger, workspace)
        self._observer = observer
        self._report = report
        self._queue: queue.Queue[tuple[ManifestInfo, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="songbatch-assembly", daemon=True)
        self._thread.start()

    def submit(self, info: ManifestInfo, unit: int) -> None:
        self._queue.put((info, unit))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._ledger.close()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            info, unit = item
            try:
                written = self._assembler.assemble_unit(info, unit)
            except SongbatchError as exc:
                title = info.assembly["units"][unit]["title"]
                self._report.assembly_errors.append(f"{info.title} / {title}: {exc}")
                self._observer(RunEvent("assembly-failed", str(exc)))
                continue
            for path in written:
                self._report.outputs.append(path)
                self._observer(RunEvent("output", str(path)))


@dataclass
class Preview:
    planned: Planned
    diff: PlanDiff


def preview(paths: Sequence[Path], profile: str | None, workspace: Workspace) -> list[Preview]:
    """The `plan` command: what rendering would add, without writing anything."""
    planned = load_all(paths, profile, workspace)
    if not workspace.ledger_path.exists():
        return [
            Preview(item, PlanDiff(new=len(item.plan.jobs), manifest_changed=True))
            for item in planned
        ]
    with Ledger(workspace.ledger_path) as ledger:
        return [
            Preview(item, ledger.diff_plan(item.plan.record, item.plan.rows)) for item in planned
        ]
