"""Profiles: which engine renders each kind of job, and how work is scheduled.

A profile is a small YAML file, loaded as strictly as a manifest. Names are looked up in the
workspace's `profiles/` folder first (so a user can override a shipped profile), then in the
profiles shipped with songbatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import songbatch
from songbatch.engines.base import EngineSpec
from songbatch.errors import ProfileError
from songbatch.workspace import Workspace
from songbatch.yamlstrict import StrictDocument, load_yaml, validation_error

DEFAULT_PROFILE = "local"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EngineConfig(_Strict):
    engine: str = Field(min_length=1)
    model: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    max_chars: int = Field(default=400, gt=0)  # speech: longest chunk one call gets
    chars_per_second: float = Field(default=14.0, gt=0)  # speech: for duration estimates
    batch_size: int = Field(default=1, ge=1, le=256)  # jobs per engine call (equal-length music)


class _ProfileFile(_Strict):
    """The fields a profile YAML may set."""

    name: str = Field(min_length=1)
    description: str | None = None
    speech: EngineConfig
    music: EngineConfig
    devices: str = Field(default="auto", min_length=1)
    lease_seconds: float = Field(default=120, gt=0)
    max_attempts: int = Field(default=3, ge=1)


class Profile(_ProfileFile):
    path: Path  # the file it was loaded from; set by the loader, never by YAML

    def engine_spec(self, kind: Literal["speech", "music"]) -> EngineSpec:
        config = self.speech if kind == "speech" else self.music
        return EngineSpec(
            kind=kind,
            engine=config.engine,
            model=config.model,
            params=dict(config.params),
            max_chars=config.max_chars,
            batch_size=config.batch_size,
        )


def builtin_profiles_dir() -> Path:
    """The shipped profiles: inside the wheel if installed so, else the checkout's `profiles/`."""
    packaged = Path(songbatch.__file__).resolve().parent / "_profiles"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "profiles"


def load_profile(path: Path | str) -> Profile:
    """Load one profile file; raises ProfileError with line, column and field on any problem."""
    file = Path(path)
    if not file.is_file():
        raise ProfileError(file, "profile file not found")
    doc: StrictDocument = load_yaml(file, error_cls=ProfileError)
    try:
        body = _ProfileFile.model_validate(doc.data)
    except ValidationError as exc:
        raise validation_error(exc, doc, _ProfileFile, error_cls=ProfileError) from None
    return Profile(**dict(body), path=file.resolve())


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
    "EngineConfig",
    "Profile",
    "available_profiles",
    "builtin_profiles_dir",
    "load_profile",
    "resolve_profile",
]
