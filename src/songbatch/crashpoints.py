"""Named crash points for the chaos tests: `SONGBATCH_CRASH_AT=after-render` kills the whole run
(coordinator and workers, one process group) with SIGKILL the first time that point is reached.
Unset, each check is one dictionary look-up."""

from __future__ import annotations

import os
import signal

ENV = "SONGBATCH_CRASH_AT"
POINTS = ("after-claim", "after-render", "after-tag", "after-replace", "after-done")
# The remote executor has its own (tests/test_replicate.py): after-reserve, after-create and
# after-settle; after-done is shared by both executors.


def crash_point(name: str) -> None:
    if os.environ.get(ENV) != name:
        return
    if hasattr(os, "killpg"):
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os._exit(137)  # pragma: no cover - Windows, or if the signal is somehow not delivered
