"""`songbatch cost`: what rendering the work left would take, in time and money, per manifest and
profile, and what was actually spent.

Remote money comes from `cost.py`, the code the budget reserves and settles with: the worst case
here is `worst_case`, what each create would reserve, and the expected figure is what
`settled_cost` would bill a successful prediction running its expected predict time. Local money
is device time times the profile's own price of a device hour (`cost:`), never a guess.

Estimates calibrate themselves from the ledger: once an engine, model and device type has
`MIN_SAMPLES` finished renders (or a Replicate model that many settled predictions), the
measured figure replaces the default, and every figure says which it is.

No network call, no `replicate` package, no engine import: deciding where to render must not
need either installed. The library never prints; the CLI shows what this returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from songbatch.cost import expected_cost, expected_predict_s, remote_model_name, worst_case
from songbatch.errors import InputError
from songbatch.executors.devices import parse_devices
from songbatch.ledger import (
    ACTUAL_GROUPS,
    ActualRow,
    EncodeSamples,
    JobRow,
    Ledger,
    LoadSamples,
    PredictSamples,
    RenderSamples,
    damaged_ledger_guard,
    utc_iso,
)
from songbatch.manifest import load_manifest
from songbatch.outputs import BOOK_FORMATS, chapter_formats
from songbatch.planner import Plan, plan_manifest
from songbatch.profiles import (
    Profile,
    RayConfig,
    RemoteModel,
    ReplicateConfig,
    actor_device,
    resolve_profile,
)
from songbatch.remote.mapping import model_input
from songbatch.workspace import Workspace

# Below this many samples a measured figure is noise (one slow first render, a warm cache).
MIN_SAMPLES = 5
# A worker's start-up and load, and a file's encode, are long, steady figures (one per worker
# and run, one per file): one measurement tells.
MIN_TIMING_SAMPLES = 1

# A worker process's start (Python, numpy, songbatch) before its engine loads, where nothing
# measured it yet: measured 2026-12-02 on the project's 2-core VM (spawn to ready, 0.98 s).
DEFAULT_STARTUP_S = 1.0

# Assembly's build time per second of audio, by format (`master`: the unit's master FLAC that
# every format is encoded from), where nothing measured it yet: songbatch's own ffmpeg encodes
# of three chapters of Alice (31 minutes) on the project's 2-core VM, 2026-12-02. Measured
# rates replace these; an 11-hour book's .m4b takes about 6 minutes at this rate.
DEFAULT_ENCODE_S_PER_AUDIO_S: dict[str, float] = {
    "master": 0.0015,
    "flac": 0.0011,
    "wav": 0.0006,
    "mp3": 0.0070,
    "mp3-book": 0.0070,
    "opus": 0.021,
    "m4b": 0.0091,  # a chapter's AAC stream, encoded as the chapter finishes
    # The whole book's file, joined from its chapters' streams after the last chapter.
    "m4b join": 0.0003,
    "mp3-book join": 0.0003,
}

# A stand-in for a voice's uploaded URL: a model input that takes a voice gets a value, so
# the input (and a per-character price, should one count it) has its real shape.
_VOICE_URL = "https://example.invalid/voice"


@dataclass(frozen=True)
class DefaultFactor:
    """A default real-time factor (device seconds per second of audio) and engine load time
    per worker and run, with where the figure comes from."""

    rtf: float
    load_s: float
    source: str


# The one table of defaults, by (engine, model, device type). Anything else has no default:
# its time is unknown until a render calibrates it. Calibrated figures replace these.
DEFAULT_FACTORS: dict[tuple[str, str, str], DefaultFactor] = {
    ("offline", "espeak-ng", "cpu"): DefaultFactor(
        0.0031,
        0.0,
        "measured 2026-12-02 on the project's 2-core VM: three chapters of Alice, 102"
        " chunks, 5.6 s of engine time for 30 minutes of audio (espeak loads per call)",
    ),
    ("offline", "sketch", "cpu"): DefaultFactor(
        0.020,
        0.0,
        "measured 2026-12-02 on the project's 2-core VM: the example album, 2 tracks,"
        " 0.94 s of render for 48 s of audio",
    ),
    ("chatterbox", "ResembleAI/chatterbox", "cuda"): DefaultFactor(
        0.36,
        30.0,
        "github.com/resemble-ai/chatterbox/issues/71: 2.75x real time on an RTX 3090, one"
        " chunk per call (batched English should be faster); load time a rough figure",
    ),
    ("musicgen", "facebook/musicgen-small", "cuda"): DefaultFactor(
        1.75,
        15.0,
        "runlocalai.co (music generation): a 10 s clip in 15-20 s on an RTX 3060, one track"
        " per call (batches share a call); load time a rough figure",
    ),
}


@dataclass(frozen=True)
class Basis:
    """Where one figure comes from: `measured` (with its sample count), `default` (with the
    default's source) or `unknown`."""

    figure: str  # e.g. "real-time factor offline espeak-ng on cpu", "predict time tts"
    value: float | None
    source: str  # measured | default | unknown
    samples: int = 0
    note: str = ""
    # Renders and predictions are what a figure's sample count counts; start-ups, loads and
    # encodes are measured too, but their counts would only muddle it.
    counted: bool = True

    def label(self) -> str:
        if self.source == "measured":
            return f"measured ({self.samples})" if self.counted else "measured"
        return self.source


@dataclass
class Estimate:
    """One manifest under one profile: the work left and what it would take."""

    manifest: str
    title: str
    profile: str
    remote: bool
    jobs_left: int = 0
    chars_left: int = 0
    audio_left_s: float = 0.0
    jobs_done: int = 0  # already rendered (in the cache): free
    chars_done: int = 0
    audio_done_s: float = 0.0
    devices: int = 0  # local: workers the run would start; remote: predictions in flight
    device_type: str = ""  # cpu, cuda, or replicate
    device_s: float | None = None  # local: device time incl. loads; remote: predict time
    wall_s: float | None = None
    usd_expected: float | None = None
    usd_worst: float | None = None  # remote: what the budget would reserve for it all
    time_from: str = "unknown"
    money_from: str = "unknown"
    basis: list[Basis] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Calibration:
    """What the ledger measured: local renders per (engine, model, device type) and remote
    predictions per model ref."""

    renders: dict[tuple[str, str, str], RenderSamples] = field(default_factory=dict)
    predictions: dict[str, PredictSamples] = field(default_factory=dict)
    loads: dict[tuple[str, str, str], LoadSamples] = field(default_factory=dict)
    encodes: dict[str, EncodeSamples] = field(default_factory=dict)

    @classmethod
    def of(cls, ledger: Ledger | None) -> Calibration:
        if ledger is None:
            return cls()
        return cls(
            renders={(s.engine, s.model, s.device): s for s in ledger.render_samples()},
            predictions={s.model_ref: s for s in ledger.predict_samples()},
            loads={(s.engine, s.model, s.device): s for s in ledger.load_samples()},
            encodes={s.fmt: s for s in ledger.encode_samples()},
        )


@dataclass
class CompareRow:
    """One profile's totals over the manifests compared."""

    profile: str
    jobs_left: int
    wall_s: float | None
    usd_expected: float | None
    usd_worst: float | None
    time_from: str
    money_from: str


# ---------------------------------------------------------------------- entry points


def manifest_paths(paths: Sequence[Path]) -> list[Path]:
    """Manifests as given, a folder standing for every `*.yaml` directly in it."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(path.glob("*.yaml"))
            if not inside:
                raise InputError(f"{path}: no *.yaml manifest in this folder")
            found.extend(inside)
        else:
            found.append(path)
    if not found:
        raise InputError("name at least one manifest or folder (or use --actual)")
    return found


def estimate(
    paths: Sequence[Path],
    profiles: Sequence[str | None],
    workspace: Workspace,
    *,
    devices: str | None = None,
) -> list[Estimate]:
    """Every manifest under every profile (None: the manifest's own, else the default)."""
    manifests = manifest_paths(paths)
    with _reading(workspace) as ledger:
        calibration = Calibration.of(ledger)
        results = []
        for path in manifests:
            loaded = load_manifest(path)
            for name in profiles:
                profile = resolve_profile(
                    name, loaded.manifest.profile, workspace, base_dir=loaded.path.parent
                )
                plan = plan_manifest(loaded, profile, workspace)
                done = ledger.done_keys([j.key for j in plan.jobs]) if ledger else set()
                results.append(estimate_plan(plan, profile, done, calibration, devices=devices))
        return results


def estimate_plan(
    plan: Plan,
    profile: Profile,
    done: set[str],
    calibration: Calibration,
    *,
    devices: str | None = None,
) -> Estimate:
    """One planned manifest: its jobs not in `done` are the work left."""
    result = Estimate(
        manifest=plan.record.path,
        title=plan.record.title,
        profile=profile.name,
        remote=profile.remote,
    )
    left = [job for job in plan.jobs if job.key not in done]
    for job in plan.jobs:
        if job.key in done:
            result.jobs_done += 1
            result.chars_done += job.chars
            result.audio_done_s += job.est_ms / 1000
    result.jobs_left = len(left)
    result.chars_left = sum(job.chars for job in left)
    result.audio_left_s = sum(job.est_ms for job in left) / 1000
    if profile.remote:
        assert profile.replicate is not None  # a remote profile has its section
        _remote(result, left, profile.replicate, calibration)
    else:
        _local(result, left, profile, calibration, devices)
    _assembly(result, plan, {job.key for job in left}, calibration)
    return result


def plan_money(
    plans: Iterable[tuple[Plan, Profile]], workspace: Workspace
) -> list[Estimate | None]:
    """`plan`'s money column: the same estimate as `cost`, for remote profiles (None for
    local ones, whose money needs a device count and a price `plan` does not ask for)."""
    items = list(plans)
    if not any(profile.remote for _, profile in items):
        return [None] * len(items)  # nothing to price: the ledger is not even opened
    with _reading(workspace) as ledger:
        calibration = Calibration.of(ledger)
        results: list[Estimate | None] = []
        for plan, profile in items:
            if not profile.remote:
                results.append(None)
                continue
            done = ledger.done_keys([j.key for j in plan.jobs]) if ledger else set()
            results.append(estimate_plan(plan, profile, done, calibration))
        return results


def compare(estimates: Sequence[Estimate]) -> list[CompareRow]:
    """Totals per profile, cheapest first (expected money; unknown money last, then the
    shorter wall time)."""
    by_profile: dict[str, list[Estimate]] = {}
    for item in estimates:
        by_profile.setdefault(item.profile, []).append(item)
    rows = []
    for name, items in by_profile.items():
        rows.append(
            CompareRow(
                profile=name,
                jobs_left=sum(i.jobs_left for i in items),
                wall_s=_sum_or_none(i.wall_s for i in items),
                usd_expected=_sum_or_none(i.usd_expected for i in items),
                usd_worst=_sum_or_none(i.usd_worst for i in items),
                time_from=_merge_labels(i.time_from for i in items),
                money_from=_merge_labels(i.money_from for i in items),
            )
        )
    inf = float("inf")
    return sorted(
        rows,
        key=lambda r: (
            inf if r.usd_expected is None else r.usd_expected,
            inf if r.wall_s is None else r.wall_s,
            r.profile,
        ),
    )


@dataclass
class Actual:
    by: str
    since: str | None
    rows: list[ActualRow]

    @property
    def total(self) -> ActualRow:
        return ActualRow(
            group="total",
            settled_usd=sum(r.settled_usd for r in self.rows),
            predictions=sum(r.predictions for r in self.rows),
            open_usd=sum(r.open_usd for r in self.rows),
            open_count=sum(r.open_count for r in self.rows),
            device_ms=sum(r.device_ms for r in self.rows),
            renders=sum(r.renders for r in self.rows),
        )


def actual(workspace: Workspace, *, by: str = "run", since: str | None = None) -> Actual:
    """Settled remote spend, open reservations and local device time, from the ledger."""
    if by not in ACTUAL_GROUPS:
        raise InputError(f"--by {by!r}: use one of {', '.join(ACTUAL_GROUPS)}")
    floor = None if since is None else since_floor(since)
    with _reading(workspace) as ledger:
        rows = [] if ledger is None else ledger.actual(by, floor)
    if by == "run":
        rows.sort(key=lambda r: (not r.group.isdigit(), int(r.group) if r.group.isdigit() else 0))
    return Actual(by=by, since=since, rows=rows)


def since_floor(since: str) -> str:
    """`--since`: a date (a UTC day, as `--by day` counts days) or a date and time (local time
    unless it names its offset, as `--until` is), as the ledger's UTC text compares."""
    try:
        if len(since) == 10:
            return date.fromisoformat(since).isoformat()
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise InputError(
            f"--since {since!r}: expected a date such as 2026-12-01 or a time such as"
            " 2026-12-01T22:00"
        ) from None
    return utc_iso(moment.astimezone().timestamp())


# ---------------------------------------------------------------------- remote


def _remote(
    result: Estimate, jobs: list[JobRow], config: ReplicateConfig, calibration: Calibration
) -> None:
    rate = config.rate_limit
    result.devices, result.device_type = rate.concurrency, "replicate"
    predict_total = longest = usd_expected = usd_worst = 0.0
    bases: dict[str, Basis] = {}
    per_second = False
    for job in jobs:
        name = remote_model_name(config, job.kind, job.model, job.request)
        model = config.models[name]
        audio_s = job.est_ms / 1000
        voice = _VOICE_URL if job.request.voice else None
        values = model_input(model, job.request, voice)
        basis = bases.get(name) or _predict_basis(name, model, calibration)
        bases[name] = basis
        predict_s = expected_predict_s(model, audio_s) * (basis.value or 1.0)
        predict_total += predict_s
        longest = max(longest, predict_s)
        usd_expected += expected_cost(config, model, values, audio_s, predict_s=predict_s)
        usd_worst += worst_case(config, model, values, audio_s).usd
        per_second = per_second or model.price.per == "second"
    result.basis = list(bases.values())
    result.device_s = predict_total
    creates_s = len(jobs) * 60.0 / rate.creates_per_min
    # Predictions run `concurrency` at a time, creates are paced by the rate limit, and no
    # run ends before its longest prediction: the slowest of the three sets the pace.
    result.wall_s = max(creates_s, predict_total / rate.concurrency, longest) if jobs else 0.0
    result.usd_expected, result.usd_worst = usd_expected, usd_worst
    result.time_from = _merge_labels(b.label() for b in result.basis) if jobs else "-"
    result.money_from = (
        f"price rules x predict time {result.time_from}" if per_second else "price rules"
    )


def _predict_basis(name: str, model: RemoteModel, calibration: Calibration) -> Basis:
    """A multiplier on the profile's predict-time model: measured over expected, once enough
    predictions of this model settled; 1 (the profile's own figures) before."""
    samples = calibration.predictions.get(model.ref)
    figure = f"predict time {name}"
    if samples is not None and samples.count >= MIN_SAMPLES:
        expected = (
            samples.count * model.predict.base_s
            + model.predict.per_audio_s * samples.est_audio_ms / 1000
        )
        if expected > 0:
            ratio = samples.predict_ms / 1000 / expected
            note = f"{ratio:.2f}x the profile's predict model"
            return Basis(figure, ratio, "measured", samples.count, note)
    note = f"profile: {model.predict.base_s:g} s + {model.predict.per_audio_s:g} s per audio second"
    return Basis(figure, 1.0, "default", samples.count if samples else 0, note)


# ---------------------------------------------------------------------- local


def _local(
    result: Estimate,
    jobs: list[JobRow],
    profile: Profile,
    calibration: Calibration,
    devices: str | None,
) -> None:
    count, device_type = _devices(result, profile, devices)
    # A run starts no more workers than it has jobs.
    workers = max(1, min(count, len(jobs)))
    result.devices, result.device_type = workers, device_type
    groups: dict[tuple[str, str], float] = {}
    for job in jobs:
        groups[(job.engine, job.model)] = groups.get((job.engine, job.model), 0.0) + job.est_ms
    device_s: float | None = 0.0
    startup_s = load_s = 0.0
    for (engine, model), planned_ms in sorted(groups.items()):
        basis, default_load = _factor_basis(engine, model, device_type, calibration)
        result.basis.append(basis)
        loading = _load_basis(engine, model, device_type, calibration, default_load)
        result.basis.append(loading.basis)
        # A worker starts once and loads each engine it renders with once.
        startup_s, load_s = max(startup_s, loading.startup_s), load_s + loading.load_s
        # The planner's audio length comes from characters per second; renders measured how
        # long this engine's audio really is for what was estimated, and that corrects both the
        # audio shown and the device time derived from it.
        audio_ms = planned_ms * _audio_ratio(calibration.renders.get((engine, model, device_type)))
        result.audio_left_s += (audio_ms - planned_ms) / 1000
        if basis.value is None or device_s is None:
            device_s = None
            result.hints.append(
                f"no default real-time factor for {engine} {model} on {device_type}: a render"
                f" of {MIN_SAMPLES} or more jobs there calibrates it"
            )
            continue
        device_s += audio_ms / 1000 * basis.value
    if profile.cost is not None and profile.cost.load_s is not None:
        startup_s, load_s = 0.0, profile.cost.load_s
    load_s += startup_s
    if not jobs:
        result.device_s = result.wall_s = 0.0
        result.time_from = "-"
    elif device_s is not None:
        # Every worker loads its engine once per run; the work splits across the workers.
        result.device_s = device_s + load_s * workers
        result.wall_s = device_s / workers + load_s
        result.time_from = _merge_labels(b.label() for b in result.basis)
    price = profile.cost.usd_per_device_hour if profile.cost is not None else None
    if price is None:
        result.hints.append(
            f"money unknown: add `cost: {{usd_per_device_hour: ...}}` to profile"
            f" {profile.name!r} (what a device hour costs you; docs/manifest.md#device-cost)"
        )
        result.money_from = "unknown"
    elif result.device_s is not None:
        result.usd_expected = result.device_s / 3600 * price
        result.money_from = f"profile cost x time {result.time_from}"


def _devices(result: Estimate, profile: Profile, devices: str | None) -> tuple[int, str]:
    """How many workers a run of `profile` has, and on what: `--devices`, else a Ray profile's
    actors (the cluster's, not this machine's), else the profile's devices here."""
    if devices is None and profile.executor == "ray":
        ray = profile.ray or RayConfig()
        device_type = "cuda" if actor_device(profile) == "gpu" else "cpu"
        if ray.actors is not None:
            return ray.actors, device_type
        # One actor per cluster GPU, counted when the run starts: unknowable offline.
        result.hints.append(
            f"estimated for 1 {device_type} actor: a Ray run takes one per device the cluster"
            f" has; set `ray.actors` in profile {profile.name!r} or pass --devices to estimate"
            " for more"
        )
        return 1, device_type
    slots, warning = parse_devices(devices or profile.devices)
    if warning:
        result.hints.append(warning)
    return len(slots), slots[0].device


@dataclass(frozen=True)
class _Loading:
    basis: Basis
    startup_s: float
    load_s: float


def _load_basis(
    engine: str, model: str, device_type: str, calibration: Calibration, default_load: float
) -> _Loading:
    """A worker's start-up and its load of one engine: the mean of the recent measured ones,
    else the defaults."""
    figure = f"start-up and load {engine} {model} on {device_type}"
    samples = calibration.loads.get((engine, model, device_type))
    if samples is not None and samples.count >= MIN_TIMING_SAMPLES:
        startup = samples.startup_ms / samples.count / 1000
        load = samples.load_ms / samples.count / 1000
        note = f"{startup:.1f} s start-up + {load:.1f} s load"
        basis = Basis(figure, startup + load, "measured", samples.count, note, counted=False)
        return _Loading(basis, startup, load)
    note = f"{DEFAULT_STARTUP_S:g} s start-up + {default_load:g} s load"
    basis = Basis(figure, DEFAULT_STARTUP_S + default_load, "default", 0, note, counted=False)
    return _Loading(basis, DEFAULT_STARTUP_S, default_load)


def _assembly(result: Estimate, plan: Plan, left: set[str], calibration: Calibration) -> None:
    """Add the assembly a render of the work left still needs to its wall time.

    Chapters and tracks are assembled in the background as they finish, while devices render,
    with each chapter's stream for the book files: that is hidden unless it is slower than the
    render. What follows the last render is not: the last unit's files and streams, then the
    book files (.m4b, book .mp3), joined from every chapter's stream."""
    if result.wall_s is None or not left:
        return
    planned_s = sum(job.est_ms for job in plan.jobs if job.key in left) / 1000
    # Audio as estimated (calibrated where renders measured it), spread over the units.
    scale = result.audio_left_s / planned_s if planned_s > 0 else 1.0
    unit_s: dict[int, float] = {}
    book_s = 0.0
    by_key = {job.key: job.est_ms for job in plan.jobs}
    touched = {row.unit for row in plan.rows if row.key in left}
    for row in plan.rows:
        seconds = (by_key[row.key] * scale + row.pause_after_ms) / 1000
        book_s += seconds
        if row.unit in touched:
            unit_s[row.unit] = unit_s.get(row.unit, 0.0) + seconds
    formats = list(plan.record.assembly.formats)
    books = [fmt for fmt in formats if fmt in BOOK_FORMATS]
    per_unit = ["master", *chapter_formats(formats), *books]
    joins = [f"{fmt} join" for fmt in books]
    rates = {fmt: _encode_basis(fmt, calibration) for fmt in [*per_unit, *joins]}
    result.basis.extend(rates.values())
    unit_rate = sum(rates[fmt].value or 0.0 for fmt in per_unit)
    units_s = sum(unit_s.values()) * unit_rate
    last_unit_s = max(unit_s.values(), default=0.0) * unit_rate
    book_file_s = book_s * sum(rates[join].value or 0.0 for join in joins)
    result.wall_s = max(result.wall_s + last_unit_s, units_s) + book_file_s
    result.time_from = _merge_labels([result.time_from, *(b.label() for b in rates.values())])


def _encode_basis(fmt: str, calibration: Calibration) -> Basis:
    """Seconds of assembly per second of audio for one format: measured, else the default."""
    figure = f"assembly {fmt}"
    samples = calibration.encodes.get(fmt)
    if samples is not None and samples.count >= MIN_TIMING_SAMPLES and samples.audio_ms > 0:
        rate = samples.build_ms / samples.audio_ms
        note = f"{samples.build_ms / 1000:.1f} s for {samples.audio_ms / 1000:.0f} s of audio"
        return Basis(figure, rate, "measured", samples.count, note, counted=False)
    rate = DEFAULT_ENCODE_S_PER_AUDIO_S.get(fmt, 0.02)
    return Basis(figure, rate, "default", 0, "ffmpeg on the project's 2-core VM", counted=False)


def _audio_ratio(samples: RenderSamples | None) -> float:
    """Measured audio over estimated audio, once enough renders calibrate it; else 1."""
    if samples is None or samples.count < MIN_SAMPLES or samples.est_ms <= 0:
        return 1.0
    return samples.audio_ms / samples.est_ms


def _factor_basis(
    engine: str, model: str, device_type: str, calibration: Calibration
) -> tuple[Basis, float]:
    """The real-time factor and the default load time of one engine and model on one device
    type: measured once enough renders finished there, else the table's default."""
    figure = f"real-time factor {engine} {model} on {device_type}"
    default = DEFAULT_FACTORS.get((engine, model, device_type))
    default_load = default.load_s if default is not None else 0.0
    samples = calibration.renders.get((engine, model, device_type))
    if samples is not None and samples.count >= MIN_SAMPLES and samples.audio_ms > 0:
        rtf = samples.render_ms / samples.audio_ms
        note = f"{samples.render_ms / 1000:.1f} s of render for {samples.audio_ms / 1000:.1f} s"
        return Basis(figure, rtf, "measured", samples.count, note), default_load
    count = samples.count if samples is not None else 0
    if default is None:
        return Basis(figure, None, "unknown", count), default_load
    return Basis(figure, default.rtf, "default", count, default.source), default_load


# ---------------------------------------------------------------------- shared


@contextmanager
def _reading(workspace: Workspace) -> Iterator[Ledger | None]:
    """The workspace's ledger opened read-only (never created or migrated), or None when the
    workspace has none yet: then nothing is done and nothing is measured."""
    if not workspace.ledger_path.exists():
        yield None
        return
    with Ledger.for_reading(workspace.ledger_path) as ledger, damaged_ledger_guard(ledger.path):
        yield ledger


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _merge_labels(labels: Iterable[str]) -> str:
    """One label for several figures: `measured (12)`, `default`, `measured (12) + default`;
    `unknown` when any is."""
    measured, counts, others = False, 0, []
    for label in (part for whole in labels for part in whole.split(" + ")):
        if label.startswith("measured"):
            measured = True
            if label.startswith("measured ("):
                counts += int(label.removeprefix("measured (").split(")")[0])
        elif label not in others and label != "-":
            others.append(label)
    if "unknown" in others:
        return "unknown"
    first = f"measured ({counts})" if counts else "measured"
    parts = ([first] if measured else []) + others
    return " + ".join(parts) if parts else "-"
