from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's state lives in its own temp folder, never in the checkout."""
    monkeypatch.setenv("SONGBATCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SONGBATCH_CRASH_AT", raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
