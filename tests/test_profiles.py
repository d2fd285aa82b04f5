"""Profiles: the shipped ones load, resolution precedence, strict errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from songbatch.engines.base import AUTO_BATCH_CEILING, EngineSpec
from songbatch.errors import ManifestError, ProfileError
from songbatch.profiles import (
    available_profiles,
    builtin_profiles_dir,
    load_profile,
    resolve_profile,
)
from songbatch.workspace import Workspace

PROFILE = """\
name: {name}
speech:
  engine: fake-speech
  model: m1
music:
  engine: fake-music
  model: m2
"""


def write_profile(folder: Path, name: str, file_name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (file_name or f"{name}.yaml")
    path.write_text(PROFILE.format(name=name), encoding="utf-8")
    return path


def test_builtin_profiles_load() -> None:
    assert builtin_profiles_dir() == Path(__file__).resolve().parents[1] / "profiles"
    assert {"local", "offline"} <= set(available_profiles(None))
    offline = resolve_profile("offline", None, None)
    assert offline.speech.engine == "offline" and offline.speech.model == "espeak-ng"
    assert offline.speech.params == {"rate": 165, "pitch": 50}
    assert (offline.speech.max_chars, offline.speech.chars_per_second) == (400, 14.0)
    assert offline.music.engine == "offline" and offline.music.model == "sketch"
    assert offline.devices == "cpu:2" and offline.path.is_absolute()
    local = resolve_profile("local", None, None)
    assert (local.speech.engine, local.speech.model) == ("chatterbox", "ResembleAI/chatterbox")
    assert local.speech.params["variant"] == "english" and local.speech.max_chars == 300
    assert (local.music.engine, local.music.model) == ("musicgen", "facebook/musicgen-small")
    assert local.devices == "auto" and local.lease_seconds == 120 and local.max_attempts == 3


def test_engine_spec() -> None:
    profile = resolve_profile("local", None, None)
    assert profile.engine_spec("speech") == EngineSpec(
        kind="speech",
        engine="chatterbox",
        model="ResembleAI/chatterbox",
        params={"variant": "english"},
        max_chars=300,
        batch_size=8,  # English chunks sampled together
    )
    music = profile.engine_spec("music")
    assert (music.kind, music.engine, music.model) == (
        "music",
        "musicgen",
        "facebook/musicgen-small",
    )
    # `batch_size: auto`: the engine sizes batches from free memory, below this ceiling.
    assert (music.batch_auto, music.batch_size) == (True, AUTO_BATCH_CEILING)


def test_default_is_local() -> None:
    assert resolve_profile(None, None, None).name == "local"


def test_precedence_explicit_then_manifest_then_default(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    write_profile(tmp_path / "profiles", "fast")
    write_profile(tmp_path / "profiles", "slow")
    assert resolve_profile("fast", "slow", workspace).name == "fast"
    assert resolve_profile(None, "slow", workspace).name == "slow"
    assert resolve_profile(None, None, workspace).name == "local"


def test_workspace_profile_shadows_builtin(tmp_path: Path) -> None:
    write_profile(tmp_path / "profiles", "my-offline", file_name="offline.yaml")
    profile = resolve_profile("offline", None, Workspace(tmp_path))
    assert profile.name == "my-offline"
    assert profile.path == (tmp_path / "profiles" / "offline.yaml").resolve()
    assert available_profiles(Workspace(tmp_path)) == ["local", "offline", "replicate"]


def test_paths_explicit_relative_to_cwd_manifest_relative_to_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profile(tmp_path / "cwd" / "conf", "from-cwd", "p.yaml")
    write_profile(tmp_path / "book" / "conf", "from-book", "p.yaml")
    write_profile(tmp_path / "cwd", "bare", "bare.yml")
    monkeypatch.chdir(tmp_path / "cwd")
    assert resolve_profile("conf/p.yaml", None, None).name == "from-cwd"
    assert resolve_profile("bare.yml", None, None).name == "bare"
    base = tmp_path / "book"
    assert resolve_profile(None, "conf/p.yaml", None, base_dir=base).name == "from-book"
    assert resolve_profile("conf/p.yaml", "conf/p.yaml", None, base_dir=base).name == "from-cwd"


def test_unknown_name_lists_available(tmp_path: Path) -> None:
    write_profile(tmp_path / "profiles", "mine")
    with pytest.raises(ProfileError) as info:
        resolve_profile("nosuch", None, Workspace(tmp_path))
    assert "unknown profile 'nosuch'; available: local, mine, offline" in str(info.value)
    assert isinstance(info.value, ManifestError)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="profile file not found"):
        resolve_profile(str(tmp_path / "none.yaml"), None, None)


@pytest.mark.parametrize(
    ("body", "line", "col", "field", "snippet"),
    [
        (PROFILE.format(name="x") + "devise: cpu\n", 8, 1, "devise", "did you mean 'devices'?"),
        (PROFILE.format(name="x") + "path: /etc\n", 8, 1, "path", "unknown field 'path'"),
        ("name: x\nspeech:\n  engine: a\n  model: b\n", 1, 1, "music", "required field"),
        (
            PROFILE.format(name="x").replace("m1", "m1\n  max_chars: -5"),
            5,
            14,
            "speech.max_chars",
            "greater than 0",
        ),
        (PROFILE.format(name="x") + "max_attempts: 010\n", 8, 15, "max_attempts", "leading zero"),
        (
            PROFILE.format(name="x").replace("m2", "m2\n  batch_size: lots"),
            8,
            15,
            "music.batch_size",
            "expected a whole number from 1 to 256, or auto (got 'lots')",
        ),
        (
            PROFILE.format(name="x") + "lease_seconds: '60'\n",
            8,
            16,
            "lease_seconds",
            "expected a number",
        ),
    ],
)
def test_profile_errors(
    tmp_path: Path, body: str, line: int, col: int, field: str, snippet: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    err = info.value
    assert (err.line, err.col, err.field) == (line, col, field)
    assert snippet in err.message and "\n" not in str(err)
