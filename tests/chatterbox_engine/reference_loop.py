"""`chatterbox_batch` as it was before issue 11's host-sync work, read from git: the reference
the batched loop's tests compare against token for token, and bench/t3_loop.py times."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
# The last commit with the per-step host loop (issue 11).
REFERENCE_COMMIT = "c845186f388aaf7f61449afb31c78c1fbd6877a8"


def load_reference_loop(folder: Path) -> ModuleType:
    """The module as of REFERENCE_COMMIT, imported from a file under `folder`; raises
    OSError or CalledProcessError where there is no git or no such history."""
    what = f"{REFERENCE_COMMIT}:src/songbatch/engines/chatterbox_batch.py"
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", what], check=True, capture_output=True, text=True
    )
    path = folder / "chatterbox_batch_reference.py"
    path.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location("chatterbox_batch_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
