"""Profiles: which engine renders each kind of job, and how work is scheduled.

A profile is a small YAML file, loaded as strictly as a manifest. Names are looked up in the
workspace's `profiles/` folder first (so a user can override a shipped profile), then in the
profiles shipped with songbatch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)

import songbatch
from songbatch.engines import engine_kinds, params_model
from songbatch.engines import params as engine_params
from songbatch.engines.base import AUTO_BATCH_CEILING, EngineSpec, Kind
from songbatch.errors import ProfileError
from songbatch.executors.devices import check_device_syntax
from songbatch.presets import PresetField
from songbatch.text import MIN_MAX_CHARS
from songbatch.workspace import Workspace
from songbatch.yamlstrict import (
    FieldPath,
    StrictDocument,
    load_yaml,
    special_file_problem,
    validation_error,
)

DEFAULT_PROFILE = "local"


class _Strict(BaseModel):
    # No .inf or .nan anywhere: every number here is a time, a count, a price or a rate.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _batch_size(value: Any) -> int | Literal["auto"]:
    if value == "auto" or (type(value) is int and 1 <= value <= 256):
        return value  # type: ignore[no-any-return]
    raise ValueError(f"expected a whole number from 1 to 256, or auto (got {value!r})")


BatchSize = Annotated[int | Literal["auto"], PlainValidator(_batch_size)]


class EngineConfig(_Strict):
    engine: str = Field(min_length=1)
    model: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    max_chars: int = Field(default=400, gt=0)  # speech: longest chunk one call gets
    chars_per_second: float = Field(default=14.0, gt=0)  # speech: for duration estimates
    # Jobs per engine call (equal-length music); `auto`: from the device's free memory.
    batch_size: BatchSize = 1


class PriceRule(_Strict):
    """How Replicate bills one prediction of a model. No defaults: a price is never guessed."""

    per: Literal["second", "1k_chars", "output"]
    hardware: str | None = None  # per second: a key of `hardware_usd_per_s`
    usd: float | None = Field(default=None, ge=0)  # per 1k_chars or per output
    chars_from: str = "text"  # per 1k_chars: which model input is counted

    @model_validator(mode="after")
    def _complete(self) -> PriceRule:
        if self.per == "second" and self.hardware is None:
            raise ValueError("a per-second price needs `hardware`")
        if self.per != "second" and self.usd is None:
            raise ValueError(f"a per-{self.per} price needs `usd`")
        return self


class PredictEstimate(_Strict):
    """Expected predict time: base_s + per_audio_s x seconds of audio asked for. A prediction
    running past `worst_factor` times this is cancelled; that bound is what the budget reserves."""

    base_s: float = Field(ge=0)
    per_audio_s: float = Field(ge=0)
    worst_factor: float = Field(default=3.0, ge=1)


class RemoteModel(_Strict):
    """One Replicate model: where to send it, how a job becomes its input, what it costs."""

    ref: str = Field(min_length=3)  # "owner/name" (official) or "owner/name:version"
    inputs: dict[str, str]  # model input -> text | lyrics | seed | duration | voice | params.X
    fixed: dict[str, Any] = Field(default_factory=dict)  # constant inputs
    limits: dict[str, list[Annotated[int, Field(ge=0)]]] = Field(default_factory=dict)  # [min, max]
    price: PriceRule
    predict: PredictEstimate

    @model_validator(mode="after")
    def _pairs(self) -> RemoteModel:
        for name, bounds in self.limits.items():
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ValueError(f"limits.{name}: expected [min, max] characters")
        return self


class RateLimit(_Strict):
    """Creates per minute (a sliding 60 s window, like Replicate's), a token-bucket burst, the
    most predictions in flight at once and the most HTTP calls on the wire at once."""

    creates_per_min: int = Field(default=600, ge=1)
    burst: int = Field(default=10, ge=1)
    # In flight = rate x a prediction's time from create to download (Little's law): at
    # 600/min that is 10/s x 3-6 s, so 32 held a 3 s model under the rate; 64 covers 6 s.
    concurrency: int = Field(default=64, ge=1)
    connections: int = Field(default=8, ge=1, le=64)


RATE_PRESETS: dict[str, RateLimit] = {
    "standard": RateLimit(),
    # Replicate's documented limit for accounts with little credit.
    "low-credit": RateLimit(creates_per_min=6, burst=1, concurrency=6, connections=2),
}


class RetryPolicy(_Strict):
    max_attempts: int = Field(default=6, ge=1)  # creates per job for 5xx/timeouts/lost replies
    base_s: float = Field(default=1.0, gt=0)
    cap_s: float = Field(default=60.0, gt=0)
    max_total_s: float = Field(default=900.0, gt=0)  # per job, from its first create


class ReplicateConfig(_Strict):
    hardware_usd_per_s: dict[str, Annotated[float, Field(ge=0)]]
    models: dict[str, RemoteModel]
    lyrics_model: str | None = None  # music jobs with lyrics go here (a key of `models`)
    rate: Literal["standard", "low-credit"] | RateLimit = "standard"
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    poll_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)  # HTTP read timeout
    cancel_grace_s: float = Field(default=5.0, ge=0)  # reserved beyond the cancel point
    max_spend_per_run: float | None = Field(default=None, ge=0)
    max_spend_per_day: float | None = Field(default=None, ge=0)
    max_spend_per_hour: float | None = Field(default=None, ge=0)  # any rolling 60 minutes

    @property
    def rate_limit(self) -> RateLimit:
        return RATE_PRESETS[self.rate] if isinstance(self.rate, str) else self.rate

    @model_validator(mode="after")
    def _consistent(self) -> ReplicateConfig:
        for name, model in self.models.items():
            hardware = model.price.hardware
            if hardware is not None and hardware not in self.hardware_usd_per_s:
                raise ValueError(f"model {name!r}: hardware {hardware!r} has no price")
        if self.lyrics_model is not None and self.lyrics_model not in self.models:
            raise ValueError(f"lyrics_model {self.lyrics_model!r} is not in `models`")
        return self


class DeviceCost(_Strict):
    """What a person pays for local devices, for `songbatch cost`: never guessed by the code
    (without it the money of a local run is unknown)."""

    usd_per_device_hour: float | None = Field(default=None, ge=0)  # rented GPU or electricity
    load_s: float | None = Field(default=None, ge=0)  # engine load per worker and run


def _ray_address(value: str | None) -> str | None:
    if value is None or value == "auto" or re.fullmatch(_RAY_ADDRESS, value):
        return value
    raise ValueError(
        f"expected auto, ray://HOST:PORT (a cluster's Ray Client server) or HOST:PORT (its"
        f" GCS, from one of its nodes), got {value!r}"
    )


_RAY_ADDRESS = r"(ray://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}"


class RayConfig(_Strict):
    """Where an `executor: ray` profile's actors run, and how many (docs/cluster.md)."""

    # None: RAY_ADDRESS if set, else a Ray started on this machine for the run.
    address: Annotated[str | None, AfterValidator(_ray_address)] = None
    # auto: CPU actors when the profile's `devices` are CPUs (the offline engine), else GPUs.
    device: Literal["auto", "gpu", "cpu"] = "auto"
    # None: one per GPU (or per `num_cpus_per_actor` CPUs) the cluster has when the run
    # starts. More than it has asks an autoscaling cluster for the rest.
    actors: int | None = Field(default=None, ge=1)
    num_cpus_per_actor: float = Field(default=1, gt=0)


class Spill(_Strict):
    """Hybrid: local first, a remote profile when it pays (spill.py). The jobs keep their keys;
    the ledger records which went where and why."""

    to: str = Field(min_length=1)  # a remote profile: a name, or a path from this file's folder
    # whole-chapters: a chapter or track renders on one backend, one voice; chunks: any job may
    # go, so a chapter may mix the two engines' voices.
    mode: Literal["whole-chapters", "chunks"] = "whole-chapters"
    on_deadline: bool = True  # when the local devices can't finish before the time limit
    # A job that failed locally this often, or for good (null: failures never spill).
    after_failures: int | None = Field(default=2, ge=1)
    on_unavailable: bool = True  # when no local device can run the engine at all
    # USD this profile's spill may spend in a run (also capped by --max-spend and the remote
    # profile's own caps); one of them must be set: a spill never spends without a bound.
    max_spend: float | None = Field(default=None, ge=0)


class _ProfileFile(_Strict):
    """The fields a profile YAML may set."""

    name: str = Field(min_length=1)
    description: str | None = None
    speech: EngineConfig
    music: EngineConfig
    devices: Annotated[str, AfterValidator(check_device_syntax)] = Field(
        default="auto", min_length=1
    )
    lease_seconds: float = Field(default=120, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    # How long one run keeps retrying a job that meets transient faults before leaving it for
    # the next run (ratelimit.TransientPolicy).
    transient_patience_s: float = Field(default=900, ge=0)
    replicate: ReplicateConfig | None = None  # required when an engine is "replicate"
    # Where local engines run: a registered backend (executors/registry.py): `local` worker
    # processes here, `ray` actors on a Ray cluster, or a plugin's.
    executor: str = Field(default="local", min_length=1)
    ray: RayConfig | None = None  # executor: ray only; its defaults without it
    cost: DeviceCost | None = None  # local devices' price, for estimates only
    # The mastering preset of books rendered with this profile that name none themselves.
    master: PresetField | None = None
    spill: Spill | None = None  # a local profile's spill-over to a remote one

    @model_validator(mode="after")
    def _remote_models_known(self) -> _ProfileFile:
        if (self.speech.engine == "replicate") != (self.music.engine == "replicate"):
            # One executor runs a whole run; mixing local and remote kinds is not supported yet.
            raise ValueError("use the replicate engine for both speech and music, or for neither")
        for kind, config in (("speech", self.speech), ("music", self.music)):
            if config.engine != "replicate":
                continue
            if self.replicate is None:
                raise ValueError(f"{kind} uses the replicate engine: add a `replicate:` section")
            if config.model not in self.replicate.models:
                raise ValueError(f"{kind} model {config.model!r} is not in replicate.models")
        return self

    @model_validator(mode="after")
    def _ray_fits(self) -> _ProfileFile:
        if self.executor != "local" and self.remote:
            raise ValueError(
                f"executor: {self.executor} runs local engines; the replicate engine runs here"
            )
        if self.ray is not None and self.executor != "ray":
            raise ValueError("a `ray:` section needs `executor: ray`")
        return self

    @property
    def remote(self) -> bool:
        """Whether jobs render through the Replicate API rather than on local devices."""
        return "replicate" in (self.speech.engine, self.music.engine)


class Profile(_ProfileFile):
    path: Path  # the file it was loaded from; set by the loader, never by YAML

    def engine_spec(self, kind: Literal["speech", "music"]) -> EngineSpec:
        config = self.speech if kind == "speech" else self.music
        auto_batch = config.batch_size == "auto"
        return EngineSpec(
            kind=kind,
            engine=config.engine,
            model=config.model,
            params=dict(config.params),
            max_chars=config.max_chars,
            batch_size=AUTO_BATCH_CEILING if auto_batch else int(config.batch_size),
            batch_auto=auto_batch,
        )


ActorDevice = Literal["cpu", "gpu"]


def actor_device(profile: Profile) -> ActorDevice:
    """A Ray profile's actors: on GPUs, or on CPUs where the profile renders on CPUs (the
    offline engine's)."""
    chosen = (profile.ray or RayConfig()).device
    if chosen != "auto":
        return chosen
    return "cpu" if profile.devices.strip().lower().startswith("cpu") else "gpu"


def builtin_profiles_dir() -> Path:
    """The shipped profiles: inside the wheel if installed so, else the checkout's `profiles/`."""
    packaged = Path(songbatch.__file__).resolve().parent / "_profiles"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "profiles"


def load_profile(path: Path | str) -> Profile:
    """Load one profile file; raises ProfileError with line, column and field on any problem."""
    file = Path(path)
    problem = special_file_problem(file)
    if problem is not None:
        raise ProfileError(file, f"the profile {problem}")
    if not file.is_file():
        raise ProfileError(file, "profile file not found")
    doc: StrictDocument = load_yaml(file, error_cls=ProfileError)
    try:
        body = _ProfileFile.model_validate(doc.data)
    except ValidationError as exc:
        raise validation_error(exc, doc, _ProfileFile, error_cls=ProfileError) from None
    _ProfileChecks(body, doc).run()
    return Profile(**dict(body), path=file.resolve())


class _ProfileChecks:
    """What needs more than one field, or an engine's declaration: each kind's engine renders
    that kind, its params are what the engine reads, chunks fit the engine, a Replicate
    model's inputs are readable. Engines that are not registered (unknown names, a plugin that
    does not load) are refused by `check_engine` before a run."""

    def __init__(self, body: _ProfileFile, doc: StrictDocument) -> None:
        self.body = body
        self.doc = doc

    def fail(self, path: FieldPath, message: str, *, at_key: bool = False) -> ProfileError:
        error = self.doc.error(path, message, at_key=at_key, error_cls=ProfileError)
        assert isinstance(error, ProfileError)
        return error

    def run(self) -> None:
        self.check_executor()
        if self.body.replicate is not None:
            self.check_inputs(self.body.replicate)
        for kind in ("speech", "music"):
            self.check_engine(kind)
        if self.body.spill is not None:
            self.check_spill()

    def check_executor(self) -> None:
        from songbatch.executors.registry import backend_problem

        problem = backend_problem(self.body.executor)
        if problem is not None:
            raise self.fail(("executor",), problem)

    def check_spill(self) -> None:
        if self.body.remote:
            raise self.fail(
                ("spill",),
                "a remote profile has nothing to spill: set it on a local one",
                at_key=True,
            )

    def check_inputs(self, replicate: ReplicateConfig) -> None:
        from songbatch.remote.mapping import source_problem

        for name, model in replicate.models.items():
            for input_name, source in model.inputs.items():
                problem = source_problem(source)
                if problem is not None:
                    raise self.fail(("replicate", "models", name, "inputs", input_name), problem)

    def check_engine(self, kind: Kind) -> None:
        config = self.body.speech if kind == "speech" else self.body.music
        kinds = engine_kinds(config.engine)
        if config.engine != "replicate" and kinds and kind not in kinds:
            only = " and ".join(kinds)
            raise self.fail((kind, "engine"), f"{config.engine!r} renders {only} only")
        model = profile_params_model(self.body, kind)
        if model is not None:
            problem = engine_params.params_problem(model, config.params)
            if problem is not None:
                named = [f for f in problem.fields if f in config.params] or list(problem.fields)
                key = problem.key or (named[0] if named else None)
                path: FieldPath = (kind, "params", key) if key else (kind, "params")
                raise self.fail(path, problem.message, at_key=problem.unknown)
        if kind == "speech":
            self.check_chunks(config)
            self.check_language(config)

    def check_chunks(self, config: EngineConfig) -> None:
        if config.max_chars < MIN_MAX_CHARS:
            raise self.fail(
                ("speech", "max_chars"),
                f"must be at least {MIN_MAX_CHARS} characters (a chunk holds at least a few"
                f" words), got {config.max_chars}",
            )
        if config.engine == "chatterbox":
            per_second = float(config.params.get("chars_per_second") or config.chars_per_second)
            longest = engine_params.CHATTERBOX_MAX_RENDER_S
            if config.max_chars / per_second > longest:
                raise self.fail(
                    ("speech", "max_chars"),
                    f"{config.max_chars} characters take about"
                    f" {config.max_chars / per_second:.0f} s to speak at {per_second:g} per"
                    f" second; Chatterbox stops every call at 40 s: use at most"
                    f" {int(longest * per_second)}",
                )

    def check_language(self, config: EngineConfig) -> None:
        """A language or voice the profile pins for every book."""
        problem = engine_language_problem(config.engine, config.params)
        if problem is not None:
            name, message = problem
            raise self.fail(("speech", "params", name), message)


def profile_params_model(
    profile: _ProfileFile, kind: Kind
) -> type[engine_params.EngineParams] | None:
    """What the profile's engine for `kind` reads from params (None: an unregistered engine)."""
    config = profile.speech if kind == "speech" else profile.music
    if config.engine != "replicate":
        return params_model(config.engine, kind)
    from songbatch.remote.mapping import params_model as remote_params_model

    replicate = profile.replicate
    assert replicate is not None  # _remote_models_known
    names = [config.model]
    if kind == "music" and replicate.lyrics_model is not None:
        names.append(replicate.lyrics_model)
    return remote_params_model([replicate.models[n] for n in names], speech=kind == "speech")


def engine_language_problem(engine: str, params: dict[str, Any]) -> tuple[str, str] | None:
    """(param, why) when the speech engine cannot speak the `language` or `voice` in `params`.
    Only what the engine itself would refuse at render time: offline needs an espeak-ng voice,
    Chatterbox English and Turbo speak English, Multilingual its 23 languages."""
    language = params.get("language")
    if engine == "chatterbox":
        variant = str(params.get("variant") or "english")
        problem = engine_params.chatterbox_language_problem(variant, language)
        return None if problem is None else ("language", problem)
    if engine == "offline":
        return _espeak_problem(params)
    return None


def _espeak_problem(params: dict[str, Any]) -> tuple[str, str] | None:
    from songbatch.engines import offline
    from songbatch.errors import EngineError

    voice = params.get("voice")
    try:
        if voice:
            offline.check_espeak_voice(str(voice))
        elif params.get("language"):
            offline.voice_for_language(str(params["language"]))
    except EngineError as exc:
        return ("voice" if voice else "language", str(exc))
    return None


def resolve_profile(
    explicit: str | None,
    manifest_profile: str | None,
    workspace: Workspace | None,
    base_dir: Path | None = None,
) -> Profile:
    """The profile to use: `--profile` > the manifest's `profile:` > "local".

    A value with a '/' (or ending .yaml/.yml) is a path: relative to the current folder when it
    came from `--profile`, to `base_dir` (the manifest's folder) when it came from the manifest.
    Anything else is a name, looked up in the workspace's profiles/ folder, then the shipped ones.
    """
    if explicit is not None:
        return _find(explicit, Path.cwd(), workspace)
    if manifest_profile is not None:
        return _find(manifest_profile, base_dir or Path.cwd(), workspace)
    return _find(DEFAULT_PROFILE, Path.cwd(), workspace)


def available_profiles(workspace: Workspace | None) -> list[str]:
    """Names that resolve_profile accepts, from the workspace and the shipped profiles."""
    return sorted({path.stem for folder in _search_dirs(workspace) for path in _yamls(folder)})


def _find(value: str, base: Path, workspace: Workspace | None) -> Profile:
    if _is_path(value):
        return load_profile(base / Path(value).expanduser())
    for folder in _search_dirs(workspace):
        candidate = folder / f"{value}.yaml"
        if candidate.is_file():
            return load_profile(candidate)
    names = ", ".join(available_profiles(workspace)) or "none"
    raise ProfileError(Path(value), f"unknown profile {value!r}; available: {names}")


def _is_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith((".yaml", ".yml"))


def _search_dirs(workspace: Workspace | None) -> list[Path]:
    dirs = [workspace.root / "profiles"] if workspace is not None else []
    return [*dirs, builtin_profiles_dir()]


def _yamls(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


__all__ = [
    "DEFAULT_PROFILE",
    "RATE_PRESETS",
    "DeviceCost",
    "EngineConfig",
    "PriceRule",
    "Profile",
    "RateLimit",
    "RayConfig",
    "RemoteModel",
    "ReplicateConfig",
    "Spill",
    "available_profiles",
    "builtin_profiles_dir",
    "load_profile",
    "resolve_profile",
]
