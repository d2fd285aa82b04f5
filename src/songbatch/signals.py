"""Stopping a run: SIGINT (Ctrl-C), SIGTERM (cron's timeout, systemd, `kill`) and SIGHUP (a
closed terminal) all become one KeyboardInterrupt in the main thread, in every phase, so each
phase's own cleanup runs (leases given back, temp files removed, ffmpeg killed) and the run ends
with exit 130.

After the first signal, later ones are noted and ignored: a second Ctrl-C must not cut the
cleanup of the first short and leave a temp file or an unrecorded run behind. A short critical
section (recording the run's exit code) defers a signal to its end instead.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, ClassVar

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _State:
    depth = 0  # nested stop_on_signals() contexts; the outermost installs and restores
    stopping = False  # a signal was turned into KeyboardInterrupt already
    deferring = 0
    pending = False
    previous: ClassVar[dict[signal.Signals, Any]] = {}


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _State.stopping:
        return
    if _State.deferring:
        _State.pending = True
        return
    _State.stopping = True
    raise KeyboardInterrupt


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside: any stop signal raises KeyboardInterrupt in the main thread (once). Re-entrant;
    off the main thread (where Python cannot take signals) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _State.depth == 0:
        _State.previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        _State.stopping = _State.pending = False
        for sig in STOP_SIGNALS:
            signal.signal(sig, _on_signal)
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
        if _State.depth == 0:
            for sig, handler in _State.previous.items():
                signal.signal(sig, handler)
            _State.stopping = _State.pending = False


@contextmanager
def signals_deferred() -> Iterator[None]:
    """A signal arriving inside is raised at the end of the block instead of in its middle."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
        if not _State.deferring and _State.pending and not _State.stopping:
            _State.pending = False
            _State.stopping = True
            raise KeyboardInterrupt


def ignore_stop_signals() -> None:
    """The work is done and recorded: a signal now must not change the exit code."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def interrupted() -> bool:
    return _State.stopping
