"""Named crash and pause points for the chaos and signal tests.

`SONGBATCH_CRASH_AT=after-render` kills the whole run
(coordinator and workers, one process group) with SIGKILL the first time that point is reached.
Unset, each check is one dictionary look-up."""

from __future__ import annotations

import os
import signal
import threading
import time

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


PAUSE_ENV = "SONGBATCH_PAUSE_AT"
PAUSE_FILE_ENV = "SONGBATCH_PAUSE_FILE"
PAUSES = ("imports", "planning", "rendering", "claimed", "assembly")


def pause_point(name: str, cancel: threading.Event | None = None) -> None:
    """For the signal tests: `SONGBATCH_PAUSE_AT=assembly` stops the run at that phase (writing
    `SONGBATCH_PAUSE_FILE` so the test knows) until a signal, or `cancel`, ends it."""
    if os.environ.get(PAUSE_ENV) != name:
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        with open(marker, "w", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {name}\n")
    while True:
        if cancel is not None and cancel.is_set():
            from songbatch.errors import Interrupted

            raise Interrupted(f"interrupted at {name}")
        time.sleep(0.05)
