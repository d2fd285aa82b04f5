from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.plugins import use_test_plugins

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
