"""The test suite's plugins (tests/plugins: the synthetic engine and the `threads` backend,
registered through their own dist-info's entry points as a third party's package would be),
made findable."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

# add_plugin (conftest.py): (distribution, {engine: "module:attribute"}, {module: source}).
AddPlugin = Callable[[str, dict[str, str], dict[str, str]], None]

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def use_test_plugins() -> None:
    """Put tests/plugins on sys.path (this process's engine discovery) and on PYTHONPATH (the
    CLIs a test runs as subprocesses; spawned workers get both)."""
    folder = str(PLUGINS)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if folder not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])
    from songbatch.engines import clear_engine_cache
    from songbatch.executors.registry import clear_backend_cache

    clear_engine_cache()
    clear_backend_cache()
