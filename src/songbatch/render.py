"""A render run: load and validate every manifest, take the run lock, plan into the ledger, run the
executor, assemble finished chapters and tracks as they complete, report.

Nothing is written before every manifest and profile has loaded cleanly, so bad input never
touches the ledger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import os
import queue
import sqlite3
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from songbatch.assemble import Assembler, FileOutcome
from songbatch.backends import (
    BackendGroup,
    Member,
    RunContext,
    build_backend,
    group_backends,
    workers_of,
)
from songbatch.crashpoints import pause_point
from songbatch.engines import check_engine
from songbatch.engines.base import EngineSpec
from songbatch.errors import (
    BudgetExceeded,
    EngineUnavailable,
    InputError,
    Interrupted,
    SongbatchError,
)
from songbatch.events import Observer, RunEvent, ignore
from songbatch.executors.publishing import ExecutorSummary
from songbatch.executors.registry import backend_plugin, backend_problem
from songbatch.fsutil import remove_quietly, sweep_temps
from songbatch.gc import forget_preview_leftovers
from songbatch.integrity import adopt_chunks, check_chunks, requeue_bad_chunks
from songbatch.ledger import JobState, Ledger, ManifestInfo, PlanDiff, damaged_ledger_guard
from songbatch.manifest import LoadedManifest, load_manifest
from songbatch.outputs import (
    Claim,
    audio_outputs,
    check_collisions,
    output_dir_problem,
    planned_outputs,
    same_file_key,
)
from songbatch.planner import Plan, commit_plan, job_kinds, plan_manifest
from songbatch.presets import preset
from songbatch.profiles import Profile, RayConfig, resolve_profile
from songbatch.quality import check_files
from songbatch.remote.preflight import check_client
from songbatch.runlock import RunLock
from songbatch.runsummary import RunSummary, build_summary, write_summary
from songbatch.scheduler import drive
from songbatch.signals import signals_deferred, stop_on_signals
from songbatch.spill import SpillLink, SpillTarget, spill_budget, spill_target
from songbatch.workspace import Workspace

if TYPE_CHECKING:
    from songbatch.remote.executor import RemoteHooks


@dataclass
class Planned:
    loaded: LoadedManifest
    profile: Profile
    plan: Plan
    spill: SpillTarget | None = None  # a hybrid profile's spill-over


@dataclass
class RenderOptions:
    workspace: Workspace
    profile: str | None = None
    devices: str | None = None
    time_limit_s: float | None = None  # from the start of rendering
    until_epoch: float | None = None  # --until: a wall-clock deadline (epoch seconds)
    max_spend: float | None = None  # USD this run may spend on remote predictions
    argv: Sequence[str] = ()
    remote_hooks: RemoteHooks | None = None  # tests and benchmarks: virtual clock, fake API
    backend: str | None = None  # --backend: a registered backend, over each profile's executor
    address: str | None = None  # --address: the Ray cluster, with backend "ray"


@dataclass
class RenderReport:
    diffs: dict[str, PlanDiff] = field(default_factory=dict)
    summary: ExecutorSummary = field(default_factory=ExecutorSummary)
    outputs: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str, str | None]] = field(default_factory=list)  # book, unit, error
    # Pending after transient faults, tried again by the next run: book, unit, last error.
    set_aside: list[tuple[str, str, str | None]] = field(default_factory=list)
    assembly_errors: list[str] = field(default_factory=list)
    # Written files that fail their book's mastering preset's rules (`songbatch check`).
    check_failures: list[str] = field(default_factory=list)
    exit_code: int = 0
    stop_reason: str | None = None  # why a run stopped early (the budget cap)
    run_summary: RunSummary | None = None
    summary_path: Path | None = None  # .songbatch/runs/<run-id>.json
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_error(self, message: str) -> None:
        with self._lock:
            self.assembly_errors.append(message)

    def add(self, info: ManifestInfo, outcome: FileOutcome, observer: Observer) -> None:
        """One assembled file's outcome (from an assembly worker or the main thread)."""
        with self._lock:
            if outcome.error is not None:
                self.assembly_errors.append(f"{info.title}: {outcome.path}: {outcome.error}")
            elif outcome.written:
                self.outputs.append(outcome.path)
        if outcome.error is not None:
            observer(RunEvent("assembly-failed", f"{outcome.path}: {outcome.error}"))
        elif outcome.written:
            observer(RunEvent("output", str(outcome.path)))


def load_all(paths: Sequence[Path], profile: str | None, workspace: Workspace) -> list[Planned]:
    """Validate and plan every manifest in memory; raises on the first bad input. Also refused
    here, before anything is written: two of these manifests writing one file, and an output
    folder that cannot be written."""
    planned = []
    for path in manifest_paths(paths):
        pause_point("planning")
        loaded = load_manifest(path)
        chosen = resolve_profile(
            profile, loaded.manifest.profile, workspace, base_dir=loaded.path.parent
        )
        spill = spill_target(chosen, workspace)
        if chosen.remote:
            check_client()
        else:
            unavailable = _unavailable_kinds(loaded, chosen, spill)
            if spill is not None:
                spill = dataclasses.replace(spill, unavailable=unavailable)
        item = Planned(loaded, chosen, plan_manifest(loaded, chosen, workspace), spill)
        problem = output_dir_problem(item.plan.record.assembly.output_dir)
        if problem is not None:
            raise InputError(f"{loaded.outputs_where}{problem}")
        planned.append(item)
    check_collisions([_claim(item) for item in planned])
    return planned


def _unavailable_kinds(
    loaded: LoadedManifest, profile: Profile, spill: SpillTarget | None
) -> frozenset[str]:
    """The kinds of the manifest's jobs whose engine does not import here: refused, unless the
    profile spills them to its spill-over backend."""
    missing = set()
    for kind in job_kinds(loaded.manifest):
        try:
            check_engine(profile.engine_spec(kind))
        except EngineUnavailable:
            if spill is None or not spill.rules.on_unavailable:
                raise
            missing.add(kind)
    return frozenset(missing)


def manifest_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a folder gives every `*.yaml` directly in it, sorted by name. Each
    must be a manifest (a folder's YAML that is not one is refused by its loader, naming it):
    profiles belong in a `profiles/` subfolder, which is not read. A file named twice (itself
    and through its folder) is rendered once, in its first place."""
    found: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.glob("*.yaml") if not p.name.startswith("."))
            if not inside:
                raise InputError(f"{path}: a folder with no *.yaml manifest in it")
        else:
            inside = [path]
        for item in inside:
            resolved = item.expanduser().resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(item)
    return found


def _claim(item: Planned) -> Claim:
    return Claim(
        manifest=str(item.loaded.path),
        where=item.loaded.outputs_where,
        files=planned_outputs(item.plan.record.assembly),
    )


def _planned_elsewhere(ledger: Ledger, planned: list[Planned]) -> tuple[list[Claim], list[str]]:
    """Other manifests this workspace planned before, as claims on their outputs; and those of
    them whose file is gone (moved or renamed: their outputs may pass to a manifest of this
    run)."""
    ours = {str(item.loaded.path) for item in planned}
    claims, gone = [], []
    for info in ledger.manifests():
        if info.path in ours:
            continue
        if not Path(info.path).exists():
            gone.append(info.path)
            continue
        claims.append(Claim(info.path, "", planned_outputs(info.assembly)))
    return claims, gone


def exit_code_of(exc: BaseException) -> int:
    """The code the CLI exits with for an exception that ends a run."""
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted.exit_code
    if isinstance(exc, SongbatchError):
        return exc.exit_code
    return 70


def render(
    paths: Sequence[Path], options: RenderOptions, observer: Observer = ignore
) -> RenderReport:
    workspace = options.workspace
    _check_max_spend(options.max_spend)
    _check_backend(options.backend, options.address)
    with stop_on_signals():
        planned = load_all(paths, options.profile, workspace)
        members = [_member(item, options) for item in planned]
        groups, warnings = group_backends(members, options.devices)
        for executor in sorted({m.profile.executor for m in members if not m.profile.remote}):
            backend_plugin(executor).check_installed()  # Ray's: songbatch[ray]
        _check_spill_budget(planned, options.max_spend)
        if options.max_spend == 0 and any(group.remote and group.members for group in groups):
            raise InputError(
                "--max-spend 0 lets this run spend nothing, so no remote job could start;"
                " `songbatch plan` shows what the book needs"
            )
        _make_workspace(workspace)
        with (
            RunLock(workspace.lock_path),
            Ledger(workspace.ledger_path) as ledger,
            damaged_ledger_guard(ledger.path),
        ):
            forget_preview_leftovers(ledger)
            return _Run(ledger, workspace, planned, groups, options, observer).run(warnings)


def _check_backend(backend: str | None, address: str | None) -> None:
    problem = None if backend is None else backend_problem(backend, f"--backend {backend!r}")
    if problem is not None:
        raise InputError(problem)
    if address is not None and backend != "ray":
        raise InputError("--address names a Ray cluster: give it with --backend ray")


def _check_max_spend(max_spend: float | None) -> None:
    if max_spend is not None and not (max_spend >= 0 and math.isfinite(max_spend)):
        raise InputError(f"--max-spend {max_spend}: expected an amount in USD >= 0")


def _member(item: Planned, options: RenderOptions) -> Member:
    profile = _with_backend(item.profile, options.backend, options.address)
    return Member(
        f"{item.loaded.path} (profile {item.profile.name})",
        profile,
        tuple(_specs_used(item)),
        item.spill,
    )


def _with_backend(profile: Profile, backend: str | None, address: str | None) -> Profile:
    """--backend (and --address) over a profile's `executor` (and `ray.address`). A Replicate
    profile is left as it is: the option says where local engines run."""
    if backend is None or profile.remote:
        return profile
    if backend != "ray":
        return profile.model_copy(update={"executor": backend, "ray": None})
    config = profile.ray or RayConfig()
    if address is not None:
        try:
            config = RayConfig.model_validate({**config.model_dump(), "address": address})
        except ValidationError as exc:
            raise InputError(f"--address {address!r}: {exc.errors()[0]['msg']}") from None
    return profile.model_copy(update={"executor": "ray", "ray": config})


def _check_spill_budget(planned: list[Planned], max_spend: float | None) -> None:
    """A spill never spends without a bound."""
    for item in planned:
        if item.spill is not None and _spill_budget(planned, max_spend) is None:
            raise InputError(
                f"{item.profile.path}: spill.to: {item.spill.profile.name} has no budget for"
                " this run: set spill.max_spend, replicate.max_spend_per_run in"
                f" {item.spill.profile.path.name}, or --max-spend"
            )


def _spill_budget(planned: list[Planned], max_spend: float | None) -> float | None:
    targets = [item.spill for item in planned if item.spill is not None]
    if not targets:
        return None
    return spill_budget(targets[0].profile, [t.rules for t in targets], max_spend)


def _specs_used(item: Planned) -> list[EngineSpec]:
    """An album with spoken layers needs its profile's speech engine beside the music one:
    the local pool loads each spec a worker is handed, once (a remote profile refuses layers
    at plan time, plancheck.py)."""
    unavailable = item.spill.unavailable if item.spill is not None else frozenset()
    kinds = [kind for kind in job_kinds(item.loaded.manifest) if kind not in unavailable]
    return [item.profile.engine_spec(kind) for kind in kinds]


def _make_workspace(workspace: Workspace) -> None:
    """Created, and proved writable, before the lock and the ledger are touched."""
    try:
        workspace.make_state_dir()
        probe = workspace.state_dir / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(
            f"cannot write the workspace {workspace.state_dir}: {exc.strerror or exc}"
            " (choose another with --workspace or SONGBATCH_HOME)"
        ) from None


@dataclass
class _Run:
    """One render run, from the lock to the recorded exit code."""

    ledger: Ledger
    workspace: Workspace
    planned: list[Planned]
    groups: list[BackendGroup]
    options: RenderOptions
    observer: Observer
    report: RenderReport = field(default_factory=RenderReport)
    run_id: int = 0
    infos: list[ManifestInfo] = field(default_factory=list)

    def run(self, warnings: list[str]) -> RenderReport:
        elsewhere, gone = _planned_elsewhere(self.ledger, self.planned)
        check_collisions([_claim(item) for item in self.planned], elsewhere)
        self.run_id = self.ledger.start_run(list(self.options.argv))
        exit_code, reason = 70, None
        try:
            self._commit(gone)
            _sweep(self.workspace, self.infos)
            self._check_files()
            for warning in warnings:
                self.observer(RunEvent("warning", warning))
            self._execute()
            self.ledger.age_manifests(self.run_id, [info.id for info in self.infos])
            self._prune()
            exit_code = self.report.exit_code = _exit_code(self.report, self.ledger, self.infos)
        except BaseException as exc:
            exit_code = exit_code_of(exc)
            reason = str(exc) or None if isinstance(exc, SongbatchError) else None
            raise
        else:
            reason = self._reason(exit_code)
        finally:
            with signals_deferred():
                self.ledger.finish_run(self.run_id, exit_code)
                self._summarise(exit_code, reason if exit_code != 70 else None)
        return self.report

    def _reason(self, exit_code: int) -> str | None:
        if self.report.stop_reason:
            return self.report.stop_reason
        if exit_code == 4:
            return "stopped at the time limit with work left; the next run continues"
        if exit_code == 1:
            failed, unwritten = len(self.report.failed), len(self.report.assembly_errors)
            aside = len(self.report.set_aside)
            reason = (
                f"{failed} job(s) failed, {unwritten} file(s) not written,"
                f" {aside} job(s) set aside by transient faults"
            )
            checks = len(self.report.check_failures)
            return reason + (f", {checks} file(s) failing their preset's check" if checks else "")
        return None

    def _summarise(self, exit_code: int, reason: str | None) -> None:
        """The run summary, from the ledger as `status` reads it; written beside the ledger.
        A summary that cannot be written costs the run nothing (the ledger has the record)."""
        try:
            summary = build_summary(
                self.ledger,
                self.run_id,
                self.infos,
                exit_code=exit_code,
                reason=reason,
                files_written=len(self.report.outputs),
            )
            self.report.run_summary = summary
            self.report.summary_path = write_summary(self.workspace.runs_dir, summary)
        except (OSError, sqlite3.Error) as exc:
            self.observer(RunEvent("warning", f"run summary not written: {exc}"))

    def _commit(self, gone: list[str]) -> None:
        claimed = {same_file_key(f.path) for item in self.planned for f in _claim(item).files}
        for info in self.ledger.manifests(gone):
            if any(same_file_key(f.path) in claimed for f in planned_outputs(info.assembly)):
                self.ledger.forget_manifest(info.path, because="its file is gone; outputs moved")
                self.observer(
                    RunEvent("warning", f"{info.path} is gone: its outputs pass to this run")
                )
        for item in self.planned:
            diff = commit_plan(self.ledger, item.plan, self.workspace)
            self.report.diffs[str(item.loaded.path)] = diff
            self.observer(RunEvent("planned", item.loaded.manifest.title, data=vars(diff)))
        paths = [str(item.loaded.path) for item in self.planned]
        by_path = {info.path: info for info in self.ledger.manifests(paths)}
        # In the run's order (folders sorted, then as given): claims break ties by it.
        self.infos = [by_path[path] for path in paths]
        self.ledger.set_priorities(
            {by_path[str(i.loaded.path)].id: i.loaded.manifest.priority for i in self.planned}
        )

    def _check_files(self) -> None:
        """Chunks recorded done are still there and intact (size and mtime, the hash when they
        differ); chunks on disk that the ledger lost are taken back once verified."""
        ids = [info.id for info in self.infos]
        checked = check_chunks(self.ledger, ids, full=False)
        requeue_bad_chunks(self.ledger, self.workspace, checked)
        for count, what in ((len(checked.missing), "missing"), (len(checked.damaged), "damaged")):
            if count:
                self.observer(
                    RunEvent("warning", f"{count} rendered chunk(s) {what}: rendering again")
                )
        adopted = adopt_chunks(self.ledger, self.workspace, ids, run_id=self.run_id)
        if adopted:
            self.observer(
                RunEvent("warning", f"{adopted} chunk(s) found on disk were verified and kept")
            )

    def _execute(self) -> None:
        tracker = UnitTracker(self.ledger, self.infos)
        assembly = AssemblyPool(
            self.ledger.path,
            self.workspace,
            self.observer,
            self.report,
            self.run_id,
            workers=assembly_workers(),
        )
        try:
            for info, unit in tracker.complete_units():
                assembly.submit(info, unit)
            for info, unit in tracker.lead_grown():
                assembly.submit_arrived(info, unit)
            self._render_jobs(tracker, assembly)
            assembly.close()
            assembler = Assembler(
                self.ledger, self.workspace, run_id=self.run_id, cancel=assembly.cancel
            )
            for info in self.infos:
                if info.kind == "audiobook" and tracker.manifest_complete(info):
                    for outcome in assembler.assemble_book(info):
                        self.report.add(info, outcome, self.observer)
                    for subtitle in assembler.book_subtitles(info):
                        self.report.add(info, subtitle, self.observer)
                    for problem in assembler.oversized_parts(info):
                        self.observer(RunEvent("warning", problem))
                    self._check_preset(info)
                elif info.kind == "album" and tracker.manifest_complete(info):
                    # Tracks written before the last one was rendered lack the album gain.
                    for meta in info.assembly.units:
                        for track in assembler.assemble_unit(info, meta.unit):
                            self.report.add(info, track, self.observer)
        except BaseException:
            assembly.abort()
            raise

    def _check_preset(self, info: ManifestInfo) -> None:
        """A book mastered to a preset is checked against its rules once written, as
        `songbatch check --preset` would: a failing rule is reported and the run exits 1."""
        chosen = preset(info.assembly.master)
        if not chosen.masters:
            return
        formats = chosen.checked_formats
        files = [
            file.path
            for file in audio_outputs(info.assembly)
            if (formats is None or file.fmt in formats) and file.path.is_file()
        ]
        for check in check_files(files, chosen):
            failed = [result for result in check.results if not result.passed]
            if not failed:
                continue
            rules = "; ".join(f"{r.rule.value} {r.value} (wants {r.limit})" for r in failed)
            message = f"{check.measurement.path} fails {chosen.name.value}: {rules}"
            self.report.check_failures.append(message)
            self.observer(RunEvent("check-failed", message))
        if files:
            data = {"files": len(files), "preset": chosen.name.value}
            message = f"{info.title}: {len(files)} file(s) against {chosen.name.value}"
            self.observer(RunEvent("checked", message, data=data))

    def _render_jobs(self, tracker: UnitTracker, assembly: AssemblyPool) -> None:
        """Every backend the manifests need, driven at once by one loop (scheduler.py)."""
        ids = [[self.infos[index].id for index in group.members] for group in self.groups]
        for group, manifest_ids in zip(self.groups, ids, strict=True):
            # A worker more than there are jobs would only load a model to sit idle.
            group.slots = group.slots[: max(1, tracker.pending_of(manifest_ids))]
        workers = sum(workers_of(group) for group in self.groups)
        self.observer(RunEvent("run-started", data={"jobs": tracker.to_render, "workers": workers}))
        pause_point("rendering")
        if not tracker.to_render:
            return
        context = RunContext(
            self.ledger,
            self.workspace,
            self.run_id,
            self.observer,
            on_published=functools.partial(_on_published, tracker, assembly),
            time_left_s=self._time_left(),
            max_spend=self.options.max_spend,
            remote_hooks=self.options.remote_hooks,
        )
        context.spill = self._spill_link()
        spill_ids = context.spill.manifest_ids if context.spill is not None else []
        # Local pools first: in one pass of the loop a pool's step sends work across before the
        # spill-over backend's step claims it.
        order = sorted(zip(self.groups, ids, strict=True), key=lambda pair: pair[0].remote)
        backends = [
            build_backend(group, manifest_ids, context)
            for group, manifest_ids in order
            if tracker.pending_of(manifest_ids)
            or (group.spill_members and tracker.pending_of(spill_ids))
        ]
        self.report.summary = drive(backends)
        self.report.stop_reason = self.report.summary.stop_reason

    def _spill_link(self) -> SpillLink | None:
        """What a hybrid run's pools and its spill-over backend share (spill.py)."""
        targets = {
            info.id: item.spill
            for info, item in zip(self.infos, self.planned, strict=True)
            if item.spill is not None
        }
        if not targets:
            return None
        first = next(iter(targets.values())).profile
        budget = _spill_budget(self.planned, self.options.max_spend)
        assert first.replicate is not None and budget is not None  # load_all, render
        return SpillLink(
            self.ledger,
            self.run_id,
            first.replicate,
            {kind: first.engine_spec(kind).model for kind in ("speech", "music")},
            targets,
            budget,
        )

    def _time_left(self) -> float | None:
        """Seconds from now to the nearer of --time-limit (counted from here, the start of
        rendering) and --until (a wall-clock moment); None without either."""
        limits = []
        if self.options.time_limit_s is not None:
            limits.append(self.options.time_limit_s)
        if self.options.until_epoch is not None:
            limits.append(max(0.0, self.options.until_epoch - time.time()))
        return min(limits) if limits else None

    def _prune(self) -> None:
        """Outputs follow the manifest: files of removed or renamed chapters, tracks and
        formats go."""
        assembler = Assembler(self.ledger, self.workspace)
        for info in self.infos:
            pruned = assembler.prune(info)
            for path in pruned.removed:
                self.observer(RunEvent("removed", str(path)))
            for path in pruned.kept:
                self.observer(
                    RunEvent(
                        "warning",
                        f"{path} is no longer planned but changed since songbatch wrote it:"
                        " left in place",
                    )
                )


def _on_published(tracker: UnitTracker, assembly: AssemblyPool, key: str) -> None:
    for info, unit in tracker.job_done(key):
        assembly.submit(info, unit)
    for info, unit in tracker.lead_grown():
        assembly.submit_arrived(info, unit)


def run_jobs(group: BackendGroup, manifest_ids: list[int], context: RunContext) -> ExecutorSummary:
    """The pending jobs of these manifests through one backend, alone (a preview)."""
    return drive([build_backend(group, manifest_ids, context)])


def _sweep(workspace: Workspace, infos: list[ManifestInfo]) -> None:
    """With the run lock held no other run of this workspace writes: every temp file of its own
    is a dead run's leftover. Another workspace's, or anyone else's, is left alone."""
    tmp = workspace.tmp_dir
    if tmp.is_dir():
        for entry in tmp.iterdir():
            remove_quietly(entry)
    owner = workspace.owner_id()
    folders = {info.assembly.output_dir for info in infos}
    folders |= {workspace.work_dir, workspace.sections_dir}
    folders |= {workspace.voices_dir, workspace.covers_dir}
    for folder in folders:
        sweep_temps(folder, owner)


def _exit_code(report: RenderReport, ledger: Ledger, infos: list[ManifestInfo]) -> int:
    counts: Counter[str] = Counter()
    ids = [info.id for info in infos]
    for count in ledger.state_counts(ids):
        counts[count.state] += count.jobs
    by_id = {info.id: info for info in infos}
    for _key, manifest_id, unit, error in ledger.failed_jobs(ids):
        info = by_id[manifest_id]
        report.failed.append((info.title, info.assembly.units[unit].title, error))
    for _key, manifest_id, unit, error in ledger.set_aside_jobs(ids):
        info = by_id[manifest_id]
        report.set_aside.append((info.title, info.assembly.units[unit].title, error))
    if not counts["pending"] and not counts["leased"] and not counts["failed"]:
        _check_outputs_written(report, ledger, infos)
    if counts["failed"] or report.assembly_errors or report.check_failures:
        return 1
    if counts["pending"] or counts["leased"]:
        if report.summary.stopped_at_budget:
            return BudgetExceeded.exit_code
        return 4 if report.summary.stopped_at_deadline else 1
    return 0


def _check_outputs_written(report: RenderReport, ledger: Ledger, infos: list[ManifestInfo]) -> None:
    """Every job done: then every planned file must be on disk as recorded. Never exit 0 with
    one missing, whatever the reason."""
    for info in infos:
        recorded = {record.path for record in ledger.outputs(info.id)}
        failed = {failure.path for failure in ledger.output_failures([info.id])}
        for file in planned_outputs(info.assembly):
            path = str(file.path)
            if path in failed:
                continue  # reported with its reason already
            if path not in recorded or not file.path.is_file():
                report.assembly_errors.append(f"{info.title}: {path} was not written")


class UnitTracker:
    """Counts each chapter's or track's unfinished jobs, to assemble it the moment it is whole."""

    def __init__(self, ledger: Ledger, infos: list[ManifestInfo]) -> None:
        self.infos = {info.id: info for info in infos}
        self._left: dict[tuple[int, int], int] = {}
        self._units_of: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._pending: set[str] = set()
        # Each unfinished unit's jobs in order and how many lead it done: a unit's leading run
        # of done chunks is what its streams' sections can be encoded from (sections.py).
        self._order: dict[tuple[int, int], list[str]] = {}
        self._lead: dict[tuple[int, int], int] = {}
        self._done: set[str] = set()
        self._grown: list[tuple[int, int]] = []
        for info in infos:
            for unit in range(len(info.assembly.units)):
                jobs = ledger.unit_jobs(info.id, unit)
                for job in jobs:
                    if job.state == JobState.PENDING:
                        self._pending.add(job.key)
                    if job.state != JobState.DONE:
                        self._left[(info.id, unit)] = self._left.get((info.id, unit), 0) + 1
                        self._units_of[job.key].append((info.id, unit))
                    else:
                        self._left.setdefault((info.id, unit), 0)
                        self._done.add(job.key)
                if self._left[(info.id, unit)]:  # begun by an earlier run: its sections too
                    self._order[(info.id, unit)] = [job.key for job in jobs]
                    if self._advance((info.id, unit)):
                        self._grown.append((info.id, unit))

    def pending_of(self, manifest_ids: Sequence[int]) -> int:
        """Distinct jobs these manifests still have to render in this run."""
        ids = set(manifest_ids)
        return sum(1 for key in self._pending if any(mid in ids for mid, _ in self._units_of[key]))

    @property
    def to_render(self) -> int:
        """Distinct jobs this run will render: a sentence said twice, or shared by two books,
        renders once; a failed job waits for `retry`."""
        return len(self._pending)

    def complete_units(self) -> list[tuple[ManifestInfo, int]]:
        return [(self.infos[mid], unit) for (mid, unit), left in self._left.items() if left == 0]

    def job_done(self, key: str) -> list[tuple[ManifestInfo, int]]:
        """The units this job's completion makes whole (each to be assembled now)."""
        finished = []
        self._done.add(key)
        for mid, unit in self._units_of.pop(key, []):
            self._left[(mid, unit)] -= 1
            if self._left[(mid, unit)] == 0:
                finished.append((self.infos[mid], unit))
                self._order.pop((mid, unit), None)
            elif self._advance((mid, unit)):
                self._grown.append((mid, unit))
        return finished

    def lead_grown(self) -> list[tuple[ManifestInfo, int]]:
        """The unfinished units whose leading run of done jobs grew since last asked: their
        streams may have a section more to encode."""
        grown, self._grown = list(dict.fromkeys(self._grown)), []
        return [(self.infos[mid], unit) for mid, unit in grown]

    def _advance(self, unit: tuple[int, int]) -> bool:
        order, lead = self._order[unit], self._lead.get(unit, 0)
        start = lead
        while lead < len(order) and order[lead] in self._done:
            lead += 1
        self._lead[unit] = lead
        return lead > start

    def manifest_complete(self, info: ManifestInfo) -> bool:
        return all(left == 0 for (mid, _), left in self._left.items() if mid == info.id)


# How much lower than the run the assembly workers (and the ffmpeg they start) ask the kernel to
# schedule them: chapters are assembled while devices render, and a CPU worker, or a GPU worker
# launching kernels, must not wait on an encode that could as well run a moment later.
ASSEMBLY_NICENESS = 10


def yield_cpu_to_devices() -> None:
    """Lower the calling thread's CPU priority by ASSEMBLY_NICENESS; children it starts
    inherit it. Linux only: there `setpriority` takes a thread id; elsewhere a thread id is no
    process id and the call could touch another process."""
    if not ASSEMBLY_NICENESS or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + ASSEMBLY_NICENESS
        )


def assembly_workers() -> int:
    """How many chapters or tracks are assembled at once: one per core. They run below the
    devices' priority (ASSEMBLY_NICENESS), so while the devices render they take only the cores
    the devices leave free, and once the last job is done every core turns to the tail."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


class AssemblyPool:
    """Assembles finished units in the background, `workers` at a time, so the coordinator
    keeps feeding devices and the book's tail after the last job is short. A unit's master is
    made first; then its parts (its chapter files, each whole-book format's stream) are queued
    to be built at once by whichever workers are free. Each worker has its own ledger
    connection (SQLite serialises their writes)."""

    def __init__(
        self,
        ledger_path: Path,
        workspace: Workspace,
        observer: Observer,
        report: RenderReport,
        run_id: int,
        workers: int = 1,
    ) -> None:
        self.cancel = threading.Event()
        self._workspace = workspace
        self._observer = observer
        self._report = report
        self._run_id = run_id
        # (manifest, unit, part): part None is a unit whose master comes first.
        # Whole units and their parts before ARRIVED items: a head start must not hold back the
        # work it is a head start on (when devices outrun the assembly, ARRIVED items queue up
        # behind the render, and the units they name are whole by the time they come up).
        self._queue: queue.PriorityQueue[_Item] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(
                target=self._serve,
                args=(Ledger(ledger_path),),
                name=f"songbatch-assembly-{number}",
                daemon=True,
            )
            for number in range(max(1, workers))
        ]
        # Items queued or in hand: a unit's parts are queued by a worker, so the pool is done
        # only when none is left anywhere.
        self._pending = 0
        self._idle = threading.Condition()
        # A unit's sections (ARRIVED, and its streams made from them) are encoded by one worker
        # at a time: `_units` holds each unit's lock, `_queued` the units with an ARRIVED item
        # waiting (one is enough), `_again` those that chunks reached while theirs ran.
        self._guard = threading.Lock()
        self._units: dict[tuple[int, int], threading.Lock] = {}
        self._queued: set[tuple[int, int]] = set()
        self._again: set[tuple[int, int]] = set()
        for thread in self._threads:
            thread.start()
        self._closed = False

    def submit(self, info: ManifestInfo, unit: int) -> None:
        """A unit whose every job is done: its master, then its parts."""
        self._pending_add(1)
        self._put(info, unit, None)

    def submit_arrived(self, info: ManifestInfo, unit: int) -> None:
        """A unit whose leading run of done chunks grew: its streams' sections that those
        decide are encoded while the rest renders, so that little is left after its last job."""
        with self._guard:
            if (info.id, unit) in self._queued:
                return
            self._queued.add((info.id, unit))
        self._pending_add(1)
        self._put(info, unit, ARRIVED)

    def close(self) -> None:
        """Assemble what was submitted, then stop."""
        if not self._closed:
            self._closed = True
            with self._idle:
                self._idle.wait_for(lambda: self._pending == 0 or self.cancel.is_set())
        self._stop_workers()

    def _stop_workers(self) -> None:
        """Every worker told to stop and waited for, however often this is called: a stop
        signal that lands while `close` waits calls `abort`, which must still wait for the
        workers to remove their temp files before the process exits."""
        for _ in self._threads:
            self._queue.put(_Item(2, next(self._order)))
        for thread in self._threads:
            thread.join()

    def _pending_add(self, count: int) -> None:
        with self._idle:
            self._pending += count
            if self._pending == 0:
                self._idle.notify_all()

    def abort(self) -> None:
        """Stop now: the files being encoded are abandoned (their temp files removed), the rest
        of the queue dropped; they are assembled by the next run."""
        self.cancel.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        with self._idle:
            self._idle.notify_all()
        self._closed = True
        self._stop_workers()

    def _serve(self, ledger: Ledger) -> None:
        yield_cpu_to_devices()
        assembler = Assembler(ledger, self._workspace, run_id=self._run_id, cancel=self.cancel)
        try:
            while (item := self._queue.get().work) is not None:
                try:
                    self._assemble(assembler, *item)
                finally:
                    self._pending_add(-1)
        except Interrupted:
            return
        finally:
            ledger.close()

    def _assemble(
        self, assembler: Assembler, info: ManifestInfo, unit: int, part: str | None
    ) -> None:
        try:
            if part is None:
                self._queue_parts(assembler, info, unit)
                return
            if part == ARRIVED:
                self._encode_arrived(assembler, info, unit)
                return
            if part.removeprefix("stream ") in assembler.streams_from_chunks(info, unit):
                with self._unit_lock(info, unit):  # after the section being encoded, if any
                    outcomes = assembler.assemble_part(info, unit, part)
            else:
                outcomes = assembler.assemble_part(info, unit, part)
        except Interrupted:
            raise
        except Exception as exc:  # a bug: still reported, and the worker goes on
            title = info.assembly.units[unit].title
            self._report.add_error(f"{info.title} / {title}: {exc}")
            self._observer(RunEvent("assembly-failed", f"{title}: {exc}"))
            return
        for outcome in outcomes:
            self._report.add(info, outcome, self._observer)

    def _queue_parts(self, assembler: Assembler, info: ManifestInfo, unit: int) -> None:
        # Streams made from the chunks' sections need no master: queued first, they are made
        # by another worker while this one makes the master.
        early = [f"stream {fmt}" for fmt in assembler.streams_from_chunks(info, unit)]
        self._queue_items(info, unit, early)
        try:
            assembler.master(info, unit)
        except Interrupted:
            raise
        except Exception as exc:  # its files fail with this reason; the book's build says why
            for outcome in assembler.unit_failed(info, unit, exc):
                self._report.add(info, outcome, self._observer)
            return
        self._queue_items(info, unit, [p for p in assembler.unit_parts(info) if p not in early])

    def _queue_items(self, info: ManifestInfo, unit: int, parts: list[str]) -> None:
        self._pending_add(len(parts))
        for part in parts:
            self._put(info, unit, part)

    def _put(self, info: ManifestInfo, unit: int, part: str | None) -> None:
        rank = 1 if part == ARRIVED else 0
        self._queue.put(_Item(rank, next(self._order), (info, unit, part)))

    def _unit_lock(self, info: ManifestInfo, unit: int) -> threading.Lock:
        with self._guard:
            return self._units.setdefault((info.id, unit), threading.Lock())

    def _encode_arrived(self, assembler: Assembler, info: ManifestInfo, unit: int) -> None:
        """The unit's sections its arrived chunks decide; a worker that finds another at it
        leaves it to that one, which goes round again for what arrived meanwhile."""
        name = (info.id, unit)
        lock = self._unit_lock(info, unit)
        with self._guard:
            self._queued.discard(name)
        while True:
            if not lock.acquire(blocking=False):
                with self._guard:
                    self._again.add(name)
                return
            try:
                assembler.encode_arrived_sections(info, unit)
            except Interrupted:
                raise
            except Exception:  # only a head start: the unit's own assembly says what fails
                pass
            finally:
                lock.release()
            with self._guard:
                if name not in self._again:
                    return
                self._again.discard(name)


# An assembly item for a unit still rendering: encode the sections its done chunks decide.
ARRIVED = "arrived"


@dataclass(order=True)
class _Item:
    """An assembly pool's queue entry: by rank (0 units and parts, 1 ARRIVED, 2 stop), then
    in the order queued; `work` None stops a worker."""

    rank: int
    seq: int
    work: tuple[ManifestInfo, int, str | None] | None = field(default=None, compare=False)


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
    with Ledger.for_reading(workspace.ledger_path) as ledger, damaged_ledger_guard(ledger.path):
        elsewhere, _gone = _planned_elsewhere(ledger, planned)
        check_collisions([_claim(item) for item in planned], elsewhere)
        return [
            Preview(item, ledger.diff_plan(item.plan.record, item.plan.rows)) for item in planned
        ]
