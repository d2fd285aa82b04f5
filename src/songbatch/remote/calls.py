"""HTTP calls off the coordinator's thread: a fixed set of threads runs the calls it is given, at
most `size` at once, and hands each reply back to the one thread that owns the ledger, which
applies it. Nothing here knows what a call does or writes the ledger, so a backend that only runs
jobs can sit on it as it is.

Daemon threads, not concurrent.futures: the interpreter joins a ThreadPoolExecutor's threads at
exit, so one call in its 30 s read timeout would hold a stopped run (Ctrl-C, exit 130) that long.
A daemon thread dies with the process; what its call would have told is found by the next run's
reconcile, as after a kill -9.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

T = TypeVar("T")
Clock = Callable[[], float]
HandOver = Callable[[], None]  # gives one reply to its handler, on the caller's thread


@dataclass(frozen=True)
class Reply(Generic[T]):
    """What a call returned, or what it raised (raised again by `get`, on the coordinator)."""

    value: T | None = None
    error: BaseException | None = None

    def get(self) -> T:
        if self.error is not None:
            raise self.error
        return cast(T, self.value)


def run_call(work: Callable[[], T]) -> Reply[T]:
    try:
        return Reply(work())
    except BaseException as exc:  # handed to the coordinator, which raises it there
        return Reply(error=exc)


class Calls(Protocol):
    """Where the executor sends its calls: the thread pool, or a test's in-process stand-in."""

    @property
    def free(self) -> int:
        """Calls that may be sent now without waiting for a connection."""
        ...

    @property
    def busy(self) -> bool:
        """Some call has not been handed back yet."""
        ...

    def submit(self, work: Callable[[], T], then: Callable[[Reply[T]], None]) -> None: ...

    def replies(self, until: float | None) -> list[HandOver]:
        """Wait for replies until `until` on the executor's clock (None: until one comes)."""
        ...

    def waitable(self) -> int:
        """A file descriptor that is readable while a reply waits: the scheduler waits on it
        beside other backends' (only on a real clock)."""
        ...

    def close(self) -> None: ...


class CallPool:
    """`size` threads, each running one call at a time. `submit` never blocks: a call beyond the
    free threads waits in line (the executor sends creates only while `free`, so a create goes
    out when it is paced, not later). `virtual`: the executor's clock is a test's virtual one,
    on which calls take no time, so `replies` waits for the next reply in real time whatever
    `until` says, and a run replays the same at any machine's speed."""

    def __init__(self, size: int, clock: Clock, *, virtual: bool = False) -> None:
        self.size = size
        self.clock = clock
        self.virtual = virtual
        self.outstanding = 0  # submitted, not yet handed back
        self._work: queue.SimpleQueue[tuple[Callable[[], object], Callable[..., None]] | None]
        self._work = queue.SimpleQueue()
        self._replies: queue.SimpleQueue[HandOver] = queue.SimpleQueue()
        # A byte per reply: readable while one waits, for a loop that waits on other things too.
        self._bell_read, self._bell_write = os.pipe()
        os.set_blocking(self._bell_read, False)
        os.set_blocking(self._bell_write, False)
        self._bell_lock = threading.Lock()  # no ring into a closed (perhaps reused) descriptor
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"replicate-call-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def free(self) -> int:
        return max(0, self.size - self.outstanding)

    @property
    def busy(self) -> bool:
        return self.outstanding > 0

    def submit(self, work: Callable[[], T], then: Callable[[Reply[T]], None]) -> None:
        self.outstanding += 1
        self._work.put((work, then))

    def replies(self, until: float | None) -> list[HandOver]:
        """The first reply (waiting for it up to `until`), then every other one already back."""
        self._silence()
        timeout = None if self.virtual or until is None else max(0.0, until - self.clock())
        try:
            ready = [self._replies.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                ready.append(self._replies.get_nowait())
            except queue.Empty:
                break
        self.outstanding -= len(ready)
        return ready

    def waitable(self) -> int:
        return self._bell_read

    def close(self) -> None:
        """Threads end after their current call; none is waited for (see the module's note).
        A call that ends later no longer rings."""
        for _ in self._threads:
            self._work.put(None)
        with self._bell_lock:
            if not self._closed:
                self._closed = True
                os.close(self._bell_read)
                os.close(self._bell_write)

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            work, then = item
            self._replies.put(functools.partial(then, run_call(work)))
            self._ring()

    def _ring(self) -> None:
        with self._bell_lock, contextlib.suppress(BlockingIOError):  # full: it rings already
            if not self._closed:
                os.write(self._bell_write, b"x")

    def _silence(self) -> None:
        """Emptied before the replies are taken: a reply put after this rings again."""
        with self._bell_lock, contextlib.suppress(BlockingIOError):
            while not self._closed and os.read(self._bell_read, 4096):
                pass


Gather = Callable[[Sequence[Callable[[], T]]], list[Reply[T]]]


def one_by_one(works: Sequence[Callable[[], T]]) -> list[Reply[T]]:
    """Each call in turn, in this thread: for a test's seeded, in-process stand-in API."""
    return [run_call(work) for work in works]


def side_by_side(size: int) -> Gather[Any]:
    """Calls on up to `size` fresh daemon threads, every reply waited for (each call is bounded
    by its own timeout), in the order given: a run's opening look at what a dead run left."""

    def gather(works: Sequence[Callable[[], T]]) -> list[Reply[T]]:
        replies = _on_threads(works, size, timeout_s=None)
        return [reply for reply in replies if reply is not None]

    return gather


def run_together(works: Sequence[Callable[[], object]], size: int, timeout_s: float) -> None:
    """Run `works` on up to `size` fresh daemon threads and wait for them, at most `timeout_s`:
    the last calls of a run being stopped (its cancels), while the pool's own threads may still
    be held by calls that will never be read. What raises is ignored: best effort."""
    _on_threads(works, size, timeout_s=timeout_s)


def _on_threads(
    works: Sequence[Callable[[], T]], size: int, *, timeout_s: float | None
) -> list[Reply[T] | None]:
    """Each work's reply in its place; None where the wait ended before it did."""
    replies: list[Reply[T] | None] = [None] * len(works)
    line: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(works)):
        line.put(index)

    def serve() -> None:
        while True:
            try:
                index = line.get_nowait()
            except queue.Empty:
                return
            replies[index] = run_call(works[index])

    threads = [threading.Thread(target=serve, daemon=True) for _ in range(min(size, len(works)))]
    for thread in threads:
        thread.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return replies
