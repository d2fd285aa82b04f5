"""`songbatch doctor`: can this machine run a profile, and if not, what to do.

Every check returns a `Check` (a name, a state, what was found, and one line saying what to do
when it is not ok); the CLI prints them. `needed` marks the checks the chosen profile depends
on: the exit code is 1 when one of those failed. Other profiles' weights are reported too, as
information.

Nothing here imports torch or an engine: the coordinator never creates a CUDA context (a context
on every GPU costs each of them memory), so versions come from package metadata, CUDA devices
are counted as the executor counts them (`CUDA_VISIBLE_DEVICES`, `nvidia-smi`), and weights are
looked up as files in the Hugging Face cache. Plugin engines are listed from their entry points'
declarations, which are light by contract (engines/registry.py). The ledger is opened
read-only, as `status` does.
The only network call is `--online`'s one GET of the Replicate account.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from songbatch.engines import check_engine, engine_registry
from songbatch.engines.base import Kind
from songbatch.engines.checkpoints import (
    CHATTERBOX_VARIANTS,
    MUSICGEN_FILES,
    cached_snapshot,
    hub_cache_dir,
    missing_files,
)
from songbatch.entrypoints import Registry
from songbatch.errors import SongbatchError, install_hint
from songbatch.executors.devices import cuda_device_count, parse_devices, visible_cuda_ids
from songbatch.profiles import Profile, available_profiles, resolve_profile
from songbatch.workspace import Workspace

State = Literal["ok", "warn", "fail", "info"]
KINDS: tuple[Kind, ...] = ("speech", "music")
# Below this much free space a render cannot be trusted to finish (chunks, masters, outputs);
# below WARN_FREE it may not finish a long book (about 150 MB of chunks per hour of speech).
FAIL_FREE_BYTES = 200 * 2**20
WARN_FREE_BYTES = 2 * 2**30

# Distributions whose versions are shown, and the extra that installs each optional one.
CORE_PACKAGES = (
    "songbatch",
    "sqlite-utils",
    "pydantic",
    "typer",
    "rich",
    "numpy",
    "soundfile",
    "mutagen",
    "imageio-ffmpeg",
    "espeakng-loader",
)
OPTIONAL_PACKAGES = {
    "torch": "local",
    "transformers": "local",
    "huggingface-hub": "local",
    "chatterbox-tts": "chatterbox",
    "replicate": "replicate",
}
# Which optional distributions an engine needs (the registry's `requires`, as distributions).
ENGINE_PACKAGES = {
    "musicgen": ("torch", "transformers"),
    "chatterbox": ("torch", "chatterbox-tts"),
    "replicate": ("replicate",),
}


@dataclass(frozen=True)
class Check:
    name: str
    state: State
    detail: str
    fix: str | None = None  # one line: what to do, when state is fail or warn
    needed: bool = False  # the chosen profile depends on it


@dataclass
class DoctorReport:
    profile: str
    online: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def can_run(self) -> bool:
        return not any(check.needed and check.state == "fail" for check in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.can_run else 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "online": self.online,
            "can_run": self.can_run,
            "checks": [asdict(check) for check in self.checks],
        }


@dataclass
class Probes:
    """What the checks read from the machine, replaceable in tests."""

    version: Callable[[str], str | None] = field(default_factory=lambda: _version)
    nvidia_smi: Callable[[], list[GpuInfo] | None] = field(default_factory=lambda: _gpus)
    account: Callable[[], str] = field(default_factory=lambda: _replicate_account)


@dataclass(frozen=True)
class GpuInfo:
    index: str
    name: str
    free_mib: int
    total_mib: int


def diagnose(
    workspace: Workspace,
    profile: str | None = None,
    *,
    online: bool = False,
    probes: Probes | None = None,
) -> DoctorReport:
    """Every check, for `profile` (default: local). A profile that does not resolve is bad
    input (ProfileError, exit 2): there is nothing to diagnose for it."""
    probes = probes or Probes()
    chosen = resolve_profile(profile, None, workspace)
    report = DoctorReport(profile=chosen.name, online=online)
    add = report.checks.append
    add(
        Check(
            "python",
            "ok",
            f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        )
    )
    for check in _packages(chosen, probes):
        add(check)
    for check in _plugins(chosen):
        add(check)
    for check in _cuda(chosen, probes):
        add(check)
    add(_ffmpeg())
    add(_espeak(needed=_uses(chosen, "offline", "speech")))
    for check in _weights(chosen, workspace):
        add(check)
    for check in _replicate(chosen, online=online, probes=probes):
        add(check)
    for check in _ledger(workspace):
        add(check)
    add(_disk(workspace))
    return report


# ---------------------------------------------------------------------- packages


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _engines(profile: Profile) -> set[str]:
    return {profile.speech.engine, profile.music.engine}


def _uses(profile: Profile, engine: str, kind: Kind | None = None) -> bool:
    kinds = KINDS if kind is None else (kind,)
    return any(profile.engine_spec(k).engine == engine for k in kinds)


def _packages(profile: Profile, probes: Probes) -> list[Check]:
    needed = {dist for engine in _engines(profile) for dist in ENGINE_PACKAGES.get(engine, ())}
    checks = []
    for dist in CORE_PACKAGES:
        version = probes.version(dist)
        if version is None:
            checks.append(
                Check(
                    f"package {dist}",
                    "fail",
                    "not installed",
                    "reinstall songbatch: pip install . in the songbatch folder",
                    needed=True,
                )
            )
        else:
            checks.append(Check(f"package {dist}", "ok", version))
    for dist, extra in OPTIONAL_PACKAGES.items():
        version = probes.version(dist)
        wanted = dist in needed
        if version is not None:
            checks.append(Check(f"package {dist}", "ok", version, needed=wanted))
        elif wanted:
            checks.append(
                Check(
                    f"package {dist}",
                    "fail",
                    f"not installed; profile {profile.name} needs it",
                    install_hint(extra),
                    needed=True,
                )
            )
        else:
            checks.append(Check(f"package {dist}", "info", f"not installed (extra {extra})"))
    # The engines' own import check too: it catches a package whose module will not be found
    # (said once: a missing distribution above already says what to install).
    if any(check.needed and check.state == "fail" for check in checks):
        return checks
    broken = engine_registry().broken
    for kind in KINDS:
        spec = profile.engine_spec(kind)
        if spec.engine == "replicate" or spec.engine in broken:
            continue  # a plugin that does not load: its own line says why (_plugins)
        try:
            check_engine(spec)
        except SongbatchError as exc:
            checks.append(
                Check(f"{kind} engine {spec.engine}", "fail", "cannot load", str(exc), needed=True)
            )
    return checks


def _plugins(profile: Profile) -> list[Check]:
    """The engines found (built-in, and plugins through the `songbatch.engines` entry points),
    then one line per plugin that is not used: one that does not load, or claims a taken name;
    the same for the backends (`songbatch.backends`). Discovery imports the plugins'
    declarations, which are light by contract (no engine, no cluster client)."""
    from songbatch.executors.registry import backend_registry

    used = set() if profile.remote else {profile.executor}
    checks = _found("engine", engine_registry(), _engines(profile))
    checks += _found("backend", backend_registry(), used)
    for name in used:
        plugin = backend_registry().entries.get(name)
        if plugin is None:
            continue  # broken: its own line above says why
        try:
            plugin.check_installed()  # Ray's: songbatch[ray]
        except SongbatchError as exc:
            checks.append(Check(f"backend {name}", "fail", "cannot start", str(exc), needed=True))
    return checks


def _found(what: str, registry: Registry[Any], used: set[str]) -> list[Check]:
    builtins = sorted(name for name, origin in registry.origins.items() if origin.builtin)
    plugins = [f"{name} ({registry.origins[name].distribution})" for name in registry.plugins()]
    detail = f"built-in: {', '.join(builtins)}; plugins: {', '.join(plugins) or 'none'}"
    if not registry.builtins_registered:
        detail += " (songbatch's own entry points are not in its installed metadata)"
    checks = [Check(f"{what}s", "ok", detail)]
    for name, problem in sorted(registry.broken.items()):
        needed = name in used
        state: State = "fail" if needed else "warn"
        detail = f"unavailable: {problem.reason}"
        checks.append(Check(f"plugin {what} {name}", state, detail, problem.fix, needed=needed))
    for problem in registry.ignored:
        checks.append(Check(f"plugin {what} {problem.name}", "warn", problem.reason, problem.fix))
    return checks


# ---------------------------------------------------------------------- devices


def _gpus() -> list[GpuInfo] | None:
    """Per GPU, free and total memory from nvidia-smi; None where there is no nvidia-smi or it
    fails (no driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [
                smi,
                "--query-gpu=index,name,memory.free,memory.total",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 4:
            continue
        index, name, free, total = parts
        try:
            gpus.append(GpuInfo(index, name, int(float(free)), int(float(total))))
        except ValueError:
            continue  # "[N/A]" on some boards: the device is still counted below
    return gpus


def _cuda(profile: Profile, probes: Probes) -> list[Check]:
    count = cuda_device_count()
    visible = visible_cuda_ids()
    where = ""
    if visible is not None:
        where = f" (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')})"
    checks = [Check("cuda devices", "ok" if count else "info", f"{count} visible{where}")]
    gpus = probes.nvidia_smi()
    for gpu in gpus or []:
        if visible is not None and gpu.index not in visible:
            continue  # another job's device: not this process's to use
        checks.append(
            Check(
                f"gpu {gpu.index}",
                "ok",
                f"{gpu.name}: {gpu.free_mib:,} MiB free of {gpu.total_mib:,} MiB",
            )
        )
    if profile.remote:
        return checks
    try:
        slots, warning = parse_devices(profile.devices)
    except SongbatchError as exc:
        checks.append(
            Check(
                f"devices {profile.devices}",
                "fail",
                str(exc),
                f"edit `devices:` in {profile.path} or pass --devices to render",
                needed=True,
            )
        )
        return checks
    gpu_engines = _uses(profile, "chatterbox") or _uses(profile, "musicgen")
    if warning and gpu_engines:
        checks.append(
            Check(
                f"devices {profile.devices}",
                "warn",
                warning,
                "install the NVIDIA driver and a CUDA build of torch, or use --profile offline",
                needed=True,
            )
        )
    else:
        names = ", ".join(slot.name for slot in slots)
        checks.append(Check(f"devices {profile.devices}", "ok", names, needed=True))
    return checks


# ---------------------------------------------------------------------- tools


_FFMPEG_FIX = "pip install --force-reinstall imageio-ffmpeg, or set IMAGEIO_FFMPEG_EXE"


def _ffmpeg() -> Check:
    from songbatch.ffmpeg import ffmpeg_exe, ffmpeg_query

    try:
        exe = ffmpeg_exe()
        first = ffmpeg_query("-version").splitlines()
    except SongbatchError as exc:
        return Check("ffmpeg", "fail", str(exc), _FFMPEG_FIX, needed=True)
    # "ffmpeg version N Copyright ...": the version is all a person needs of that line.
    version = " ".join(first[0].split()[:3]) if first else "unknown version"
    return Check("ffmpeg", "ok", f"{version} ({exe})", needed=True)


def _espeak(*, needed: bool) -> Check:
    try:
        from songbatch.engines import espeak

        rate = espeak.sample_rate()
    except (SongbatchError, OSError, ImportError) as exc:
        return Check(
            "espeak-ng",
            "fail" if needed else "warn",
            f"does not load: {exc}",
            "pip install --force-reinstall espeakng-loader",
            needed=needed,
        )
    version = _version("espeakng-loader") or "?"
    return Check("espeak-ng", "ok", f"espeakng-loader {version}, {rate} Hz", needed=needed)


# ---------------------------------------------------------------------- weights


def _weights(chosen: Profile, workspace: Workspace) -> list[Check]:
    """The chosen profile's local models (needed), then every other profile's found (info)."""
    checks = _profile_weights(chosen, needed=True)
    seen = {(check.name) for check in checks}
    for name in available_profiles(workspace):
        if name == chosen.name:
            continue
        try:
            other = resolve_profile(name, None, workspace)
        except SongbatchError as exc:
            checks.append(Check(f"profile {name}", "warn", str(exc), "fix or remove the file"))
            continue
        for check in _profile_weights(other, needed=False):
            if check.name not in seen:
                seen.add(check.name)
                checks.append(check)
    return checks


def _profile_weights(profile: Profile, *, needed: bool) -> list[Check]:
    checks = []
    for kind in KINDS:
        spec = profile.engine_spec(kind)
        if spec.engine == "chatterbox":
            variant = CHATTERBOX_VARIANTS.get(str(spec.params.get("variant", "english")).lower())
            if variant is None:
                continue  # refused when the profile loads
            # The library's own download fetches the variant's repo, whatever `model:` says.
            repo = variant.repo_id if spec.model in _CHATTERBOX_REPOS else spec.model
            files: list[tuple[str, ...]] = [(name,) for name in variant.files]
            label = f"weights chatterbox {variant.name}"
            checks.append(_model_files(label, repo, files, profile, needed))
        elif spec.engine == "musicgen":
            label = "weights musicgen"
            checks.append(_model_files(label, spec.model, list(MUSICGEN_FILES), profile, needed))
    return checks


_CHATTERBOX_REPOS = {variant.repo_id for variant in CHATTERBOX_VARIANTS.values()}


def _model_files(
    label: str, model: str, files: Sequence[tuple[str, ...]], profile: Profile, needed: bool
) -> Check:
    name = f"{label} ({model})"
    folder = Path(model).expanduser()
    local = folder.is_dir() or model.startswith((".", "~", "/"))
    if local:
        where = f"local folder {folder}"
        found: Path | None = folder if folder.is_dir() else None
    else:
        cache = hub_cache_dir()
        where = f"the Hugging Face cache ({cache})"
        found = cached_snapshot(model, cache)
    missing = [" or ".join(choices) for choices in files] if found is None else []
    if found is not None:
        missing = missing_files(found, files)
    if not missing:
        return Check(name, "ok", f"in {where}: {found}", needed=needed)
    what = "not there" if found is None else f"lacks {', '.join(missing)}"
    fix = (
        f"copy the checkpoint's files into {folder}"
        if local
        else f"hf download {model} (with network access), or set `model:` in {profile.path}"
        " to a local folder"
    )
    return Check(
        name,
        "fail" if needed else "info",
        f"{what} in {where}; profile {profile.name} uses it",
        fix,
        needed=needed,
    )


# ---------------------------------------------------------------------- replicate


def _replicate_account() -> str:
    """One GET of /v1/account through the official client (REPLICATE_BASE_URL honoured); the
    account's username. Raises what the client raises."""
    from replicate.client import Client

    return str(Client().accounts.current().username)


def _replicate(profile: Profile, *, online: bool, probes: Probes) -> list[Check]:
    from songbatch.remote.client import redact

    needed = profile.remote
    token = os.environ.get("REPLICATE_API_TOKEN", "").strip()
    if not token:
        state: State = "fail" if needed else "info"
        return [
            Check(
                "replicate token",
                state,
                "REPLICATE_API_TOKEN is not set",
                "export REPLICATE_API_TOKEN=r8_... (https://replicate.com/account/api-tokens)",
                needed=needed,
            )
        ]
    checks = [Check("replicate token", "ok", "REPLICATE_API_TOKEN is set", needed=needed)]
    if not online:
        return checks
    if importlib.util.find_spec("replicate") is None:
        checks.append(
            Check(
                "replicate account",
                "fail" if needed else "warn",
                "cannot check the token: the replicate package is not installed",
                install_hint("replicate"),
                needed=needed,
            )
        )
        return checks
    try:
        username = probes.account()
    except Exception as exc:  # the client raises its own and httpx's errors: all one answer
        status = getattr(exc, "status", None)
        refused = status in (401, 403)
        detail = redact(" ".join(str(exc).split()) or type(exc).__name__)
        checks.append(
            Check(
                "replicate account",
                "fail" if needed or refused else "warn",
                f"the token was refused ({status}): {detail}"
                if refused
                else f"the API did not answer: {detail}",
                "make a new token at https://replicate.com/account/api-tokens"
                if refused
                else "check the network (and REPLICATE_BASE_URL if set), then run again",
                needed=needed or refused,
            )
        )
        return checks
    detail = f"token valid for {redact(username)}"
    checks.append(Check("replicate account", "ok", detail, needed=needed))
    return checks


# ---------------------------------------------------------------------- state


def _ledger(workspace: Workspace) -> list[Check]:
    from songbatch.errors import LedgerOutdated
    from songbatch.ledger import Ledger, damaged_ledger_guard

    path = workspace.ledger_path
    if not path.exists():
        return [Check("ledger", "info", f"none yet at {path} (the first render makes it)")]
    size = sum(_size(path.with_name(path.name + suffix)) for suffix in ("", "-wal", "-shm"))
    try:
        with Ledger.for_reading(path) as ledger, damaged_ledger_guard(path):
            result = ledger.quick_check()
            jobs = ledger.job_count()
    except LedgerOutdated as exc:
        return [Check("ledger", "warn", str(exc), "songbatch render upgrades it", needed=True)]
    except SongbatchError as exc:  # damaged or unopenable: its message says what to do
        return [Check("ledger", "fail", str(exc), _first_hint(str(exc)), needed=True)]
    chunks = _tree_size(workspace.chunks_dir)
    if result != "ok":
        return [
            Check(
                "ledger",
                "fail",
                f"{path}: quick_check says {result}",
                f"move it aside (mv '{path}' '{path}.damaged') and render again",
                needed=True,
            )
        ]
    return [
        Check(
            "ledger",
            "ok",
            f"{path}: integrity ok, {jobs:,} jobs, {_mb(size)}; chunks {_mb(chunks)}",
            needed=True,
        )
    ]


def _first_hint(message: str) -> str:
    _, _, hint = message.rpartition("): ")
    return hint or message


def _disk(workspace: Workspace) -> Check:
    folder = workspace.root
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return Check("disk", "fail", f"{folder}: {exc}", "check the workspace folder", True)
    detail = f"{_mb(free)} free at {folder}"
    if free < FAIL_FREE_BYTES:
        return Check("disk", "fail", detail, "free some space or use another --workspace", True)
    if free < WARN_FREE_BYTES:
        return Check(
            "disk", "warn", detail, "a long book may not fit: `songbatch gc` frees old chunks", True
        )
    return Check("disk", "ok", detail, needed=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tree_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        total += sum(_size(Path(root) / name) for name in files)
    return total


def _mb(size: int) -> str:
    if size >= 2**30:
        return f"{size / 2**30:.1f} GiB"
    return f"{size / 2**20:.1f} MiB"
