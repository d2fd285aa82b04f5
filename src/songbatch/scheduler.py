"""One coordinator loop for every backend a run needs.

A run's manifests may need several backends at once: a book on the offline engine, an album on
the local GPUs and a book on Replicate, in one folder a cron line renders nightly. Each backend
runs its own jobs (a pool of worker processes, a pool of HTTP calls); this loop steps every one
of them on this one thread, which is the only one that writes the ledger, and waits for
whichever has something to say first: a worker's message, a call's reply, a backend's timer.

A backend is stepped, never left to block: `step` does what is due (take in what came back,
publish, renew leases, claim and hand out) and says how long it can wait; `wait` blocks on its
own events alone (the remote one's virtual clock lives there, so its tests replay the same at
any speed); `waitables` are what wake it when several share the loop. A stop (Ctrl-C, an error
in any backend) stops every backend the same way: what finished is published, every other lease
goes back.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import fields
from multiprocessing.connection import Connection, wait
from typing import Protocol, TypeAlias

from songbatch.errors import Interrupted
from songbatch.executors.publishing import ExecutorSummary
from songbatch.signals import stop_on_signals

# A step's answer: seconds until the backend wants its next step (math.inf: only one of its
# events can change anything), or FINISHED: it has nothing left to do in this run.
FINISHED = None
# A pipe to a worker, a process's sentinel or a file descriptor that becomes readable.
Waitable: TypeAlias = Connection | int


class Backend(Protocol):
    """What the scheduler drives. Built over the manifests whose jobs it runs."""

    @property
    def name(self) -> str:
        """ "local", "replicate": in messages."""
        ...

    @property
    def summary(self) -> ExecutorSummary: ...

    def start(self) -> None:
        """Spawn workers, open connections, settle what a dead run left open."""
        ...

    def step(self) -> float | None:
        """Do what is due now; seconds until the next step is due, or FINISHED."""
        ...

    def wait(self, timeout_s: float) -> None:
        """Block until one of this backend's events or `timeout_s`, and take in what came.
        Also called with 0 after a shared wait: take in what is there, without blocking."""
        ...

    def waitables(self) -> list[Waitable]:
        """What wakes this backend in a shared wait (for `multiprocessing.connection.wait`)."""
        ...

    def stop_now(self, outcome: str) -> None:
        """Interrupted or failed ("interrupted", "aborted": the released attempts' outcome):
        keep what finished, give every other lease back."""
        ...

    def close(self) -> None:
        """Release processes, threads and connections (after `stop_now` or a finished run)."""
        ...


def drive(backends: Sequence[Backend]) -> ExecutorSummary:
    """Step every backend until each has finished; one summary for the run."""
    with stop_on_signals():
        started: list[Backend] = []
        try:
            for backend in backends:
                started.append(backend)
                backend.start()
            _loop(list(backends))
        except KeyboardInterrupt:
            _stop_all(started, "interrupted")
            raise Interrupted(_interrupted_message(backends)) from None
        except BaseException:
            _stop_all(started, "aborted")
            raise
        finally:
            for backend in started:
                backend.close()
    return merged([backend.summary for backend in backends])


def _loop(active: list[Backend]) -> None:
    while active:
        delays: list[float] = []
        for backend in list(active):
            delay = backend.step()
            if delay is FINISHED:
                active.remove(backend)
            else:
                delays.append(max(0.0, delay))
        if not active:
            return
        timeout = min(delays)
        if len(active) == 1:
            active[0].wait(timeout)
            continue
        wait(
            [w for backend in active for w in backend.waitables()],
            timeout=None if math.isinf(timeout) else timeout,
        )
        for backend in active:
            backend.wait(0.0)


def _stop_all(backends: Sequence[Backend], outcome: str) -> None:
    for backend in backends:
        with contextlib.suppress(Exception):
            backend.stop_now(outcome)


def _interrupted_message(backends: Sequence[Backend]) -> str:
    names = {backend.name for backend in backends}
    if names == {"replicate"}:
        return "interrupted: predictions in flight cancelled, jobs pending"
    if "replicate" in names:
        return "interrupted: jobs in flight went back to pending, predictions cancelled"
    return "interrupted: jobs in flight went back to pending"


def merged(summaries: Sequence[ExecutorSummary]) -> ExecutorSummary:
    """The run's figures: counts added up, a stop by any backend a stop of the run."""
    total = ExecutorSummary()
    for summary in summaries:
        for item in fields(ExecutorSummary):
            mine, theirs = getattr(total, item.name), getattr(summary, item.name)
            if isinstance(mine, bool):
                setattr(total, item.name, mine or theirs)
            elif isinstance(mine, int):
                setattr(total, item.name, mine + theirs)
            elif theirs is not None:
                setattr(total, item.name, theirs if mine is None else f"{mine}; {theirs}")
    return total
