"""The worker process: one per device, engines loaded once and kept, one render at a time.

It never touches the ledger. It renders a ticket, and a writer thread encodes the result into
the temp path it was given, syncs it and reports its sha256, while the device already renders
the next ticket; the coordinator does the fenced publish. The environment (for instance
CUDA_VISIBLE_DEVICES) is set before any engine module, and so CUDA, is imported.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from songbatch.engines.base import EngineSpec, ProgressFn, RenderResult
from songbatch.executors.messages import (
    BatchLimit,
    DeviceGone,
    Failed,
    Fatal,
    FromWorker,
    Jobs,
    Loaded,
    Progress,
    Ready,
    Rendered,
    RenderedFile,
    Started,
    Ticket,
    ToWorker,
)

PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class WorkerConfig:
    name: str
    device: str
    env: dict[str, str] = field(default_factory=dict)
    specs: dict[str, EngineSpec] = field(default_factory=dict)
    coordinator_pid: int | None = None


def spec_id(kind: str, engine: str, model: str) -> str:
    """One engine instance per worker for each of these: a profile may use one engine name for
    both kinds (with different settings)."""
    return f"{kind}|{engine}|{model}"


def leave_with_coordinator(coordinator_pid: int | None, lifeline: Connection) -> None:
    """A worker never outlives its coordinator (on a GPU box it would hold the model in VRAM):
    Linux kills it the moment the coordinator dies (the parent-death signal); everywhere, a
    thread waiting on the lifeline pipe, which only the coordinator holds open, sees EOF when
    it dies and ends the process, even while the engine is busy rendering."""
    _set_parent_death_signal()
    if coordinator_pid is not None and os.getppid() != coordinator_pid:
        os._exit(1)  # it died before the signal was armed

    watch_lifeline(lifeline)


def watch_lifeline(lifeline: Connection) -> None:
    """End this process when the other end of `lifeline` closes."""

    def wait() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(1)

    threading.Thread(target=wait, name="lifeline", daemon=True).start()


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def worker_main(conn: Connection, config: WorkerConfig) -> None:
    os.environ.update(config.env)
    os.environ.setdefault("TQDM_DISABLE", "1")
    # EOF or a broken pipe: the coordinator is gone or stopping us, nothing to report to.
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        _Worker(conn, config).serve()


class _Worker:
    def __init__(self, conn: Connection, config: WorkerConfig) -> None:
        self.conn = conn
        self.config = config
        self.engines = Engines(config.specs, config.device)
        # Sends come from the render loop and the writer thread.
        self._send_lock = threading.Lock()
        self._written: queue.Queue[tuple[Ticket, RenderResult, float] | None] = queue.Queue(1)
        self._writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)

    def send(self, message: FromWorker) -> None:
        with self._send_lock:
            self.conn.send(message)

    def serve(self) -> None:
        from songbatch.errors import SongbatchError

        self._writer.start()
        self.send(Ready(os.getpid()))
        try:
            while isinstance(message := self._receive(), Jobs):
                tickets = message.tickets
                try:
                    engine, loaded = self.engines.get(tickets[0].spec_id)
                except SongbatchError as exc:
                    self.send(Fatal(tickets[0].token, str(exc)))
                    return
                if loaded is not None:
                    self.send(loaded)
                try:
                    self._render(engine, tickets)
                except DeviceLost as exc:
                    self.send(DeviceGone(str(exc)))
                    return
                if (changed := self.engines.limit_change(tickets[0].spec_id)) is not None:
                    self.send(changed)
        finally:
            self._written.put(None)
            self._writer.join()
            self.engines.close()

    def _receive(self) -> ToWorker:
        message: ToWorker = self.conn.recv()
        return message

    def _render(self, engine: Any, tickets: list[Ticket]) -> None:
        """One engine call for the batch; each result goes to the writer, each error is that
        job's alone."""
        self.send(Started([ticket.token for ticket in tickets]))
        last_sent = time.monotonic()

        def progress() -> None:
            nonlocal last_sent
            now = time.monotonic()
            if now - last_sent >= PROGRESS_EVERY_S:
                self.send(Progress())
                last_sent = now

        batch = render_batch(engine, tickets, progress)
        for failure in batch.failed:
            self.send(failure)
        for ticket, result in batch.rendered:
            self._written.put((ticket, result, batch.engine_s))
        if batch.device_lost is not None:
            raise DeviceLost(batch.device_lost)

    def _write_loop(self) -> None:
        from songbatch import audio
        from songbatch.crashpoints import crash_point

        while (item := self._written.get()) is not None:
            ticket, result, engine_s = item
            started = time.monotonic()
            try:
                sha256 = audio.write_chunk(Path(ticket.tmp_path), result, key=ticket.key)
            except Exception as exc:
                self.send(unwritten(ticket.token, exc))
                continue
            crash_point("after-tag")
            written = rendered_file(result, sha256, engine_s, time.monotonic() - started)
            self.send(Rendered(ticket.token, written))


class Engines:
    """The engines one process renders with (a worker's, a Ray actor's), each loaded the first
    time a job needs it and kept for the process's life."""

    def __init__(self, specs: dict[str, EngineSpec], device: str) -> None:
        self.specs = specs
        self.device = device
        self._loaded: dict[str, Any] = {}
        self._limits: dict[str, int] = {}  # the batch limit last reported, per spec

    def has(self, spec: str) -> bool:
        return spec in self._loaded

    def get(self, spec: str) -> tuple[Any, Loaded | None]:
        """The engine for `spec`, and the `Loaded` to report when this call loaded it. Raises
        SongbatchError when it cannot be loaded (the run stops: every job would fail alike)."""
        from songbatch.engines import load_engine
        from songbatch.engines.base import batch_limit

        if spec in self._loaded:
            return self._loaded[spec], None
        started = time.monotonic()
        engine = self._loaded[spec] = load_engine(self.specs[spec], self.device)
        self._limits[spec] = batch_limit(engine)
        return engine, Loaded(spec, time.monotonic() - started, self._limits[spec])

    def limit_change(self, spec: str) -> BatchLimit | None:
        """An engine that sizes batches from its device (`batch_size: auto`) may know better
        after a call (a measured peak, memory freed or taken): the coordinator's next calls
        follow what it says now."""
        from songbatch.engines.base import batch_limit

        limit = batch_limit(self._loaded[spec])
        if limit == self._limits.get(spec):
            return None
        self._limits[spec] = limit
        return BatchLimit(spec, limit)

    def close(self) -> None:
        for engine in self._loaded.values():
            with contextlib.suppress(Exception):  # a lost CUDA context may fail to free
                engine.close()


@dataclass
class RenderedBatch:
    """What one engine call made of its tickets."""

    rendered: list[tuple[Ticket, RenderResult]] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    engine_s: float = 0.0  # the call's time per job
    device_lost: str | None = None  # a sticky device error: the process must go


def render_batch(engine: Any, tickets: list[Ticket], progress: ProgressFn) -> RenderedBatch:
    """One engine call for the batch, each error that job's alone; a whole call that fails
    fails each of its jobs, and one that poisons the device sets them aside (transient)."""
    from songbatch.crashpoints import crash_point
    from songbatch.errors import EngineError

    started = time.monotonic()
    try:
        requests = [t.request.for_engine(t.key, t.voice_path) for t in tickets]
        results = list(engine.render(requests, progress))
        if len(results) != len(tickets):
            raise EngineError(f"engine gave {len(results)} results for {len(tickets)} jobs")
    except Exception as exc:  # the whole call failed: every job of the batch, not the run
        return _batch_failed(tickets, exc)
    crash_point("after-render")
    elapsed = (time.monotonic() - started) / len(tickets)
    poisoned = next((r for r in results if isinstance(r, EngineError) and poisons(r)), None)
    if poisoned is not None:
        return _batch_failed(tickets, poisoned)
    batch = RenderedBatch(engine_s=elapsed)
    for ticket, result in zip(tickets, results, strict=True):
        if isinstance(result, EngineError):
            batch.failed.append(Failed(ticket.token, *_describe(result)))
        else:
            batch.rendered.append((ticket, result))
    return batch


def _batch_failed(tickets: list[Ticket], exc: BaseException) -> RenderedBatch:
    if not poisons(exc):
        return RenderedBatch(failed=[Failed(ticket.token, *_describe(exc)) for ticket in tickets])
    # The device's fault, not the jobs': they are set aside uncharged, and the process leaves,
    # since every later call on its CUDA context would fail the same way. The coordinator
    # starts a fresh worker (a new context) on the device.
    message = _describe(exc)[0].splitlines()[0]
    failed = [Failed(ticket.token, f"[device] {message}", True, True) for ticket in tickets]
    return RenderedBatch(failed=failed, device_lost=message)


def unwritten(token: int, exc: BaseException) -> Failed:
    """A job whose audio could not be made into its file."""
    message, retryable, transient = _describe(exc)
    return Failed(token, f"could not write the audio: {message}", retryable, transient)


def rendered_file(
    result: RenderResult, sha256: str, engine_s: float, write_s: float
) -> RenderedFile:
    """A written job as the coordinator records it."""
    return RenderedFile(
        sha256=sha256,
        duration_ms=round(result.duration_s * 1000),
        engine_ms=round(engine_s * 1000),
        render_ms=round((engine_s + write_s) * 1000),
        info=dict(result.info or {}),
    )


class DeviceLost(Exception):
    """The worker's CUDA context is unusable (a sticky error): the worker must exit."""


# CUDA errors that leave the context unusable: after one, every later call in this process
# fails (torch >= 2.5 raises them for NaN probabilities in multinomial and out-of-range
# embedding indices). Out of memory is not one of them: it is transient and recoverable.
_STICKY_CUDA = re.compile(
    r"device-side assert|illegal memory access|unspecified launch failure|misaligned address"
    r"|illegal instruction|uncorrectable ECC|CUDA error: an illegal"
)


def poisons(exc: BaseException) -> bool:
    """Whether this error leaves the worker's device unusable until a new process."""
    return bool(_STICKY_CUDA.search(str(exc)))


# The machine's state, not the job's: a full disk or quota, an I/O error, memory.
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM})


def _describe(exc: BaseException) -> tuple[str, bool, bool]:
    """The message, whether another attempt may help, and whether the cause is transient (the
    job is then set aside uncharged). An unexpected exception is an engine bug, worth one more
    try on a fresh attempt."""
    from songbatch.errors import EngineError

    if isinstance(exc, EngineError):
        return str(exc), exc.retryable, exc.transient
    message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, MemoryError):
        return message or "out of memory", True, True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return message, True, True
    return message, True, False
