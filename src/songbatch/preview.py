"""`songbatch preview`: the opening seconds of one chapter or track, through a given profile, as
a file in `<workspace>/previews/<slug>/`, to proof-listen before committing to a whole render.

The preview's jobs are the real plan's (the planner plans the whole manifest in memory and the
preview takes the chosen unit's first jobs), so their keys are the real render's: chunks a
preview renders are cached, and reused by the real render, and chunks already rendered are
reused by the preview. Speech: the unit's first chunks whose estimated length (with the pauses
between them) reaches `seconds`, cut at a chunk boundary, so the preview is never shorter than
asked unless the chapter is. Music: a track is one job (a layered one, its layers' jobs), and
rendering it shorter would change its key (and so nothing would be reused), so the whole track is
rendered and assembled into its master, as the album's render makes it (its layers mixed, its
fade-in, and its fade-out when the preview reaches the end), and the preview keeps its first
`seconds`; the album's render then costs nothing more for that track, master included.

The jobs run through the same executors (workers, leases, fenced publish) under a temporary
manifest row named `preview:<manifest path>`, removed when the preview ends, however it ends
(a killed preview's row is removed by the next render, preview or `gc`, and `status` never
shows it). The manifest itself is never planned by a preview: `status` and `plan` of it are
unchanged but for the shared chunk cache.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from songbatch import audio
from songbatch.assemble import Assembler
from songbatch.backends import BackendGroup, RunContext
from songbatch.engines import check_engine
from songbatch.engines.base import EngineSpec, Kind
from songbatch.errors import EngineError, InputError
from songbatch.events import Observer, ignore
from songbatch.executors.devices import DeviceSlot, parse_devices
from songbatch.executors.worker import spec_id
from songbatch.fsutil import fsync_file, remove_quietly, replace_durably, temp_sibling
from songbatch.gc import PREVIEW_PREFIX, forget_preview_leftovers
from songbatch.integrity import adopt_chunks, check_chunks, requeue_bad_chunks
from songbatch.ledger import JobState, Ledger, ManifestInfo, ManifestRecord, damaged_ledger_guard
from songbatch.manifest import LoadedManifest, load_manifest
from songbatch.planner import Plan, commit_plan, job_key, job_kinds, plan_manifest
from songbatch.profiles import Profile, resolve_profile
from songbatch.remote.preflight import check_client
from songbatch.render import exit_code_of, run_jobs
from songbatch.runlock import RunLock
from songbatch.signals import signals_deferred, stop_on_signals
from songbatch.workspace import Workspace

MAX_SECONDS = 3600.0


@dataclass
class PreviewOptions:
    workspace: Workspace
    profile: str | None = None
    chapter: int | None = None  # 1-based; audiobooks
    track: int | None = None  # 1-based; albums
    seconds: float = 30.0
    devices: str | None = None
    argv: Sequence[str] = ()


@dataclass(frozen=True)
class PreviewResult:
    path: Path
    unit_title: str
    duration_ms: int
    jobs: int  # jobs the preview needed
    rendered: int  # of them, rendered by this preview
    cached: int  # of them, already in the cache


def preview_unit(
    manifest: Path, options: PreviewOptions, observer: Observer = ignore
) -> PreviewResult:
    _check_seconds(options.seconds)
    workspace = options.workspace
    with stop_on_signals():
        loaded = load_manifest(manifest)
        profile = resolve_profile(
            options.profile, loaded.manifest.profile, workspace, base_dir=loaded.path.parent
        )
        kind: Kind = "speech" if loaded.manifest.kind == "audiobook" else "music"
        if profile.remote:
            check_client()
        else:
            for needed in job_kinds(loaded.manifest):
                check_engine(profile.engine_spec(needed))
        unit = _unit_index(loaded, options)
        full = plan_manifest(loaded, profile, workspace)
        plan = _preview_plan(full, unit, kind, options.seconds)
        slots, _warning = (
            ([], None) if profile.remote else parse_devices(options.devices or profile.devices)
        )
        workspace.make_state_dir()
        with (
            RunLock(workspace.lock_path),
            Ledger(workspace.ledger_path) as ledger,
            damaged_ledger_guard(ledger.path),
        ):
            forget_preview_leftovers(ledger)
            return _Preview(ledger, workspace, profile, plan, slots, options, observer).run(kind)


def _check_seconds(seconds: float) -> None:
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise InputError(f"--seconds {seconds}: expected a number of seconds above 0, at most 3600")


def _unit_index(loaded: LoadedManifest, options: PreviewOptions) -> int:
    manifest = loaded.manifest
    book = manifest.kind == "audiobook"
    # --chapter N counts the chapters the person wrote: not the credits the builder adds.
    indexes = (
        [i for i, chapter in enumerate(manifest.chapters) if chapter.credits is None]  # type: ignore[union-attr]
        if book
        else list(range(len(manifest.tracks)))  # type: ignore[union-attr]
    )
    units = len(indexes)
    wrong, right = ("--track", "--chapter") if book else ("--chapter", "--track")
    if (options.track if book else options.chapter) is not None:
        raise InputError(
            f"{loaded.path}: {wrong} is for {'albums' if book else 'audiobooks'};"
            f" this {manifest.kind} takes {right} N"
        )
    number = (options.chapter if book else options.track) or 1
    if not 1 <= number <= units:
        what = "chapter" if book else "track"
        raise InputError(f"{right} {number}: {loaded.path} has {units} {what}(s), 1 to {units}")
    return indexes[number - 1]


def _preview_plan(full: Plan, unit: int, kind: Kind, seconds: float) -> Plan:
    """The unit's first jobs as a plan of their own (one unit, no output formats), under the
    temporary preview path: a chapter's first `seconds`, a track's every job (its master is
    made of them all)."""
    by_key = {job.key: job for job in full.jobs}
    rows, total_ms = [], 0
    for row in sorted((r for r in full.rows if r.unit == unit), key=lambda r: r.seq):
        rows.append(dataclasses.replace(row, unit=0))
        total_ms += by_key[row.key].est_ms
        if kind == "speech" and total_ms >= seconds * 1000:
            break
        total_ms += row.pause_after_ms
    keys = {row.key for row in rows}
    spec = full.record.assembly
    meta = dataclasses.replace(spec.units[unit], unit=0)
    assembly = dataclasses.replace(spec, formats=(), units=(meta,))
    record = ManifestRecord(
        path=PREVIEW_PREFIX + full.record.path,
        kind=full.record.kind,
        title=f"{full.record.title} (preview)",
        slug=full.record.slug,
        source_sha256=full.record.source_sha256,
        profile=full.record.profile,
        plan_sha256=job_key({"preview": [row.key for row in rows], "assembly": assembly.to_dict()}),
        assembly=assembly,
    )
    jobs = [job for job in full.jobs if job.key in keys]
    return Plan(record=record, jobs=jobs, rows=rows, stored=full.stored)


@dataclass
class _Preview:
    ledger: Ledger
    workspace: Workspace
    profile: Profile
    plan: Plan
    slots: list[DeviceSlot]
    options: PreviewOptions
    observer: Observer

    def run(self, kind: Kind) -> PreviewResult:
        ledger, record = self.ledger, self.plan.record
        run_id = ledger.start_run(list(self.options.argv))
        exit_code = 70
        try:
            _clear_tmp(self.workspace)
            commit_plan(ledger, self.plan, self.workspace)
            [info] = ledger.manifests([record.path])
            checked = check_chunks(ledger, [info.id], full=False)
            requeue_bad_chunks(ledger, self.workspace, checked)
            adopt_chunks(ledger, self.workspace, [info.id], run_id=run_id)
            to_render = self._pending(info)
            if to_render:
                self._execute(info, run_id, to_render)
            result = self._write(info, kind, rendered=to_render)
            exit_code = 0
            return result
        except BaseException as exc:
            exit_code = exit_code_of(exc)
            raise
        finally:
            with signals_deferred():
                # The preview was never a planned manifest: its row goes, its jobs stay cache.
                ledger.forget_manifest(record.path, because="preview finished")
                ledger.finish_run(run_id, exit_code)

    def _pending(self, info: ManifestInfo) -> int:
        return sum(
            count.jobs
            for count in self.ledger.state_counts([info.id])
            if count.state == JobState.PENDING
        )

    def _execute(self, info: ManifestInfo, run_id: int, to_render: int) -> None:
        profile = self.profile
        specs = {spec_id(s.kind, s.engine, s.model): s for s in _specs(self.plan, profile)}
        group = BackendGroup([0], profile, specs, self.slots[: max(1, to_render)])
        context = RunContext(self.ledger, self.workspace, run_id, self.observer)
        run_jobs(group, [info.id], context)

    def _write(self, info: ManifestInfo, kind: Kind, *, rendered: int) -> PreviewResult:
        jobs = self.ledger.unit_jobs(info.id, 0)
        failed = self.ledger.failed_jobs([info.id])
        if failed:
            raise EngineError(f"the preview's job {failed[0][0][:12]} failed: {failed[0][3]}")
        if any(job.state != JobState.DONE or job.out_path is None for job in jobs):
            raise EngineError(
                "the preview's jobs were not all rendered (set aside by a transient fault):"
                " run it again",
                transient=True,
            )
        unit = info.assembly.units[0]
        folder = self.workspace.root / "previews" / info.slug
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{unit.file}.flac"
        chunks = [self.ledger.resolve(job.out_path) for job in jobs if job.out_path]
        owner = self.workspace.owner_id()
        if kind == "music":
            master = Assembler(self.ledger, self.workspace).master(info, 0)
            duration_ms = _excerpt(master.path, path, self.options.seconds, owner)
        else:
            segments: list[audio.Segment] = []
            for job, chunk in zip(jobs, chunks, strict=True):
                segments.append(audio.Segment(path=chunk))
                if job is not jobs[-1] and job.pause_after_ms:
                    segments.append(audio.Segment(silence_s=job.pause_after_ms / 1000))
            probe = sf.info(str(chunks[0]))
            duration_ms = audio.assemble_master(
                segments, path, sample_rate=probe.samplerate, channels=probe.channels, owner=owner
            )
        distinct = len({job.key for job in jobs})
        return PreviewResult(
            path=path,
            unit_title=unit.title,
            duration_ms=duration_ms,
            jobs=distinct,
            rendered=rendered,
            cached=distinct - rendered,
        )


def _specs(plan: Plan, profile: Profile) -> list[EngineSpec]:
    """The engines the preview's jobs need: each kind's spec (a layered track's speech and
    music), under each model its jobs name (a remote profile's lyrics model; locally always
    the one)."""
    needed = sorted({(job.kind, job.model) for job in plan.jobs})
    return [
        dataclasses.replace(profile.engine_spec(kind), model=model)  # type: ignore[arg-type]
        for kind, model in needed
    ]


def _clear_tmp(workspace: Workspace) -> None:
    """With the run lock held, every file in the temp folder is a dead run's leftover."""
    tmp = workspace.tmp_dir
    if tmp.is_dir():
        for entry in tmp.iterdir():
            remove_quietly(entry)


def _excerpt(source: Path, target: Path, seconds: float, owner: str) -> int:
    """The first `seconds` of `source` as FLAC at `target`, streamed, written under a temp
    name and renamed; its length in ms."""
    tmp = temp_sibling(target, owner)
    frames = 0
    try:
        with sf.SoundFile(source) as src:
            limit = min(src.frames, round(seconds * src.samplerate))
            with sf.SoundFile(
                tmp,
                "w",
                samplerate=src.samplerate,
                channels=src.channels,
                subtype=audio.CHUNK_SUBTYPE,
                format="FLAC",
            ) as out:
                while frames < limit:
                    block = src.read(min(audio.BLOCK_FRAMES, limit - frames), dtype="float32")
                    if len(block) == 0:
                        break
                    out.write(block)
                    frames += len(block)
            rate = int(src.samplerate)
        fsync_file(tmp)
        replace_durably(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return round(frames * 1000 / rate)
