"""Engines as plugins (issue 13): a third party's package declares an engine through the
`songbatch.engines` entry points and it renders like a built-in, in spawned workers; one that
does not load is one line naming its distribution and entry point, and nothing else breaks; one
that claims a built-in's name does not replace it.

The synthetic engine is such a plugin (tests/plugins, put on the path by conftest.py). The others
here are written into a temporary folder with their own dist-info, on sys.path (and PYTHONPATH)
for one test only; the discovery cache is cleared around each."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.books import book_manifest, synthetic_profile
from helpers.plugins import AddPlugin
from songbatch.cli.main import app
from songbatch.engines import (
    EngineSpec,
    check_engine,
    engine_kinds,
    engine_registry,
    known_engines,
    params_model,
)
from songbatch.engines import builtin as builtin_engines
from songbatch.engines.registry import BUILTIN_ENGINES, GROUP, discover
from songbatch.errors import EngineUnavailable

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


BROKEN = """\
import songbatch_no_such_dependency  # what a plugin whose dependency is missing does
"""

MUSIC_ENTRY = """\
from songbatch.engines import EngineEntry
from songbatch.engines.params import EngineParams

class Params(EngineParams):
    loudness: float = 1.0

def engine():
    return EngineEntry("made_engine_impl", params={"music": Params})

NOT_AN_ENTRY = "made_engine_impl"
SPEECH_WITHOUT_LANGUAGE = EngineEntry("made_engine_impl", params={"speech": Params})
"""


def plugged_profile(folder: Path, engine: str) -> Path:
    path = folder / "plugged.yaml"
    path.write_text(
        f"name: plugged\nspeech: {{engine: {engine}, model: any}}\n"
        "music: {engine: offline, model: sketch}\ndevices: cpu:1\n",
        encoding="utf-8",
    )
    return path


def doctor(workspace: Path, profile: str, code: int = 0) -> dict[str, dict[str, Any]]:
    result = invoke("doctor", "--profile", profile, "--workspace", str(workspace), "--json")
    assert result.exit_code == code, result.output
    return {check["name"]: check for check in json.loads(result.stdout)["checks"]}


# ---------------------------------------------------------------------- built-ins


def test_the_built_ins_register_through_pyproject_as_the_registry_loads_them() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"][GROUP] == BUILTIN_ENGINES
    for name, value in BUILTIN_ENGINES.items():
        point = importlib.metadata.EntryPoint(name, value, GROUP)
        assert engine_registry().entries[name] is point.load()
    assert engine_registry().entries["offline"] is builtin_engines.OFFLINE


def test_the_built_ins_exist_when_the_installed_metadata_lists_none() -> None:
    """A checkout run with PYTHONPATH=src, or an editable install older than its pyproject."""
    stale = discover([])
    assert sorted(stale.entries) == ["chatterbox", "musicgen", "offline"]
    assert not stale.builtins_registered and not stale.broken and not stale.ignored
    own = [importlib.metadata.EntryPoint(n, v, GROUP) for n, v in BUILTIN_ENGINES.items()]
    current = discover(own)
    assert current.builtins_registered and not current.ignored
    assert current.entries == stale.entries


# ---------------------------------------------------------------------- a working plugin


def test_the_synthetic_engine_is_a_plugin_found_through_its_entry_point() -> None:
    from songbatch_synthetic import SyntheticMusicParams, SyntheticSpeechParams

    registry = engine_registry()
    origin = registry.origins["synthetic"]
    assert origin.distribution == "songbatch-test-plugins 0.0.0"
    assert origin.entry_point == "synthetic = songbatch_synthetic:ENGINE"
    assert registry.plugins() == ["synthetic"]
    assert params_model("synthetic", "speech") is SyntheticSpeechParams
    assert params_model("synthetic", "music") is SyntheticMusicParams
    assert "synthetic" in known_engines()
    assert not (REPO / "src" / "songbatch" / "engines" / "synthetic.py").exists()


def test_a_plugin_engine_renders_a_book_in_spawned_workers(tmp_path: Path) -> None:
    """The coordinator reads the plugin's declaration only; the workers, spawned processes
    with discovery of their own, import and run its engine."""
    sys.modules.pop("songbatch_synthetic.engine", None)
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:2")
    manifest = book_manifest(tmp_path, chapters=2, sentences=2, formats="[flac]")
    result = invoke("render", str(manifest), "--workspace", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "rendered 4 job(s)" in result.output
    assert len(list((tmp_path / "outputs").rglob("*.flac"))) == 2, result.output
    assert "songbatch_synthetic.engine" not in sys.modules, "rendered here, not in a worker"


def test_a_zero_argument_callable_may_stand_for_the_entry(add_plugin: AddPlugin) -> None:
    add_plugin("made-plugin", {"made": "made_engine:engine"}, {"made_engine": MUSIC_ENTRY})
    assert "made" in known_engines()
    assert engine_kinds("made") == ("music",)
    model = params_model("made", "music")
    assert model is not None and model.__name__ == "Params"
    assert engine_registry().origins["made"].distribution == "made-plugin 1.0"


# ---------------------------------------------------------------------- broken plugins


def test_a_plugin_that_does_not_load_is_one_line_naming_it_and_offline_still_renders(
    tmp_path: Path, add_plugin: AddPlugin
) -> None:
    add_plugin("broken-plugin", {"broken": "broken_engine:ENGINE"}, {"broken_engine": BROKEN})
    assert "broken" not in known_engines() and engine_kinds("broken") == ()
    assert "synthetic" in known_engines(), "the other plugins still load"
    book = tmp_path / "plugged"
    book.mkdir()
    plugged_profile(book, "broken")
    manifest = book_manifest(
        book, chapters=1, sentences=2, formats="[flac]", profile="plugged.yaml"
    )
    result = invoke("render", str(manifest), "--workspace", str(book))
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert "speech engine 'broken' is unavailable" in line
    assert "entry point 'broken = broken_engine:ENGINE' of broken-plugin 1.0" in line
    assert "ModuleNotFoundError: No module named 'songbatch_no_such_dependency'" in line
    assert "reinstall or uninstall broken-plugin 1.0, or choose another profile" in line
    assert not (book / "outputs").exists()
    # The offline engine renders beside it, in workers that discover the broken plugin too.
    offline = tmp_path / "offline"
    offline.mkdir()
    manifest = book_manifest(offline, chapters=1, sentences=2, formats="[flac]", profile="offline")
    result = invoke("render", str(manifest), "--workspace", str(offline))
    assert result.exit_code == 0, result.output
    assert len(list((offline / "outputs").rglob("*.flac"))) == 1, result.output


def test_a_value_that_is_not_a_usable_entry_is_unavailable_saying_why(
    add_plugin: AddPlugin,
) -> None:
    add_plugin(
        "odd-plugin",
        {"odd": "made_engine:NOT_AN_ENTRY", "mute": "made_engine:SPEECH_WITHOUT_LANGUAGE"},
        {"made_engine": MUSIC_ENTRY},
    )
    broken = engine_registry().broken
    assert broken["odd"].reason == (
        "entry point 'odd = made_engine:NOT_AN_ENTRY' of odd-plugin 1.0 does not load:"
        " made_engine:NOT_AN_ENTRY is a str, not a songbatch.engines.EngineEntry (or a"
        " function returning one)"
    )
    assert broken["mute"].reason.endswith(
        "its speech params model must subclass songbatch.engines.params.SpeechParams"
    )
    with pytest.raises(EngineUnavailable, match="speech engine 'odd' is unavailable: entry"):
        check_engine(EngineSpec(kind="speech", engine="odd", model="m"))


def test_doctor_lists_plugin_engines_and_the_broken_ones(
    tmp_path: Path, add_plugin: AddPlugin
) -> None:
    add_plugin("broken-plugin", {"broken": "broken_engine:ENGINE"}, {"broken_engine": BROKEN})
    checks = doctor(tmp_path, "offline")
    assert checks["engines"]["state"] == "ok"
    assert checks["engines"]["detail"].startswith(
        "built-in: chatterbox, musicgen, offline; plugins: synthetic (songbatch-test-plugins 0.0.0)"
    )
    broken = checks["plugin engine broken"]
    assert broken["state"] == "warn" and not broken["needed"], "offline does not use it"
    assert "broken-plugin 1.0" in broken["detail"] and "ModuleNotFoundError" in broken["detail"]
    assert broken["fix"] == "reinstall or uninstall broken-plugin 1.0"
    # A profile that uses it cannot run; said once, on the plugin's line.
    (tmp_path / "profiles").mkdir()
    plugged_profile(tmp_path / "profiles", "broken")
    checks = doctor(tmp_path, "plugged", code=1)
    assert checks["plugin engine broken"]["state"] == "fail"
    assert checks["plugin engine broken"]["needed"]
    assert "speech engine broken" not in checks


# ---------------------------------------------------------------------- names


def test_a_plugin_claiming_a_built_in_name_does_not_replace_it(
    tmp_path: Path, add_plugin: AddPlugin
) -> None:
    """Ignored without being imported (its module would raise); the built-in stays, doctor
    says which package claimed the name."""
    never = 'raise RuntimeError("a plugin with a taken name is never imported")\n'
    add_plugin(
        "evil-plugin",
        {"offline": "evil_engine:ENGINE", "replicate": "evil_engine:ENGINE"},
        {"evil_engine": never},
    )
    registry = engine_registry()
    assert registry.entries["offline"] is builtin_engines.OFFLINE
    assert registry.origins["offline"].builtin
    assert "replicate" not in registry.entries and not registry.broken
    assert [problem.name for problem in registry.ignored] == ["offline", "replicate"]
    assert registry.ignored[0].reason == (
        "entry point 'offline = evil_engine:ENGINE' of evil-plugin 1.0 is ignored: 'offline'"
        " is a built-in engine's name"
    )
    assert "evil_engine" not in sys.modules
    check_engine(EngineSpec(kind="speech", engine="offline", model="espeak-ng"))
    checks = doctor(tmp_path, "offline")
    assert checks["plugin engine offline"]["state"] == "warn"
    assert "evil-plugin 1.0" in checks["plugin engine offline"]["fix"]


def test_one_name_from_two_distributions_is_used_from_neither(add_plugin: AddPlugin) -> None:
    add_plugin("twin-a", {"twin": "made_engine:engine"}, {"made_engine": MUSIC_ENTRY})
    add_plugin("twin-b", {"twin": "made_engine:engine"}, {})
    assert "twin" not in known_engines()
    with pytest.raises(EngineUnavailable) as raised:
        check_engine(EngineSpec(kind="music", engine="twin", model="m"))
    message = str(raised.value)
    assert "'twin' is declared 2 times, by entry point 'twin = made_engine:engine'" in message
    assert "uninstall all but one of twin-a 1.0, twin-b 1.0" in message and "\n" not in message
