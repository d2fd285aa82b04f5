from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.plugins import AddPlugin, use_test_plugins
from songbatch.engines import clear_engine_cache
from songbatch.engines.registry import GROUP

REPO = Path(__file__).resolve().parents[1]

# The synthetic engine is a plugin (tests/plugins), found through its entry point: here, in the
# CLIs the tests run as subprocesses, and in every worker they spawn.
use_test_plugins()


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's state lives in its own temp folder, never in the checkout."""
    monkeypatch.setenv("SONGBATCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SONGBATCH_CRASH_AT", raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)


@pytest.fixture
def add_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AddPlugin]:
    """add(distribution, {engine: "module:attribute"}, {module: source}): an installed package
    with those entry points, found from now on (sys.path for this process and the workers it
    spawns, PYTHONPATH for subprocesses)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ["PYTHONPATH"]]))
    modules: list[str] = []

    def add(distribution: str, points: dict[str, str], sources: dict[str, str]) -> None:
        info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        metadata = f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n"
        (info / "METADATA").write_text(metadata, encoding="utf-8")
        lines = [f"[{GROUP}]", *(f"{name} = {value}" for name, value in points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for module, source in sources.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            modules.append(module)
        clear_engine_cache()

    clear_engine_cache()
    yield add
    clear_engine_cache()  # the next lookup, after monkeypatch takes the folder away, rereads
    for module in modules:
        sys.modules.pop(module, None)
