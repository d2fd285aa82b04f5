"""Worker transports: how the pool's coordinator reaches its workers, and nothing more.

The coordinator (executors/local.py, `LocalExecutor`) owns the ledger and every policy: claims,
leases, batching, heartbeats, fenced publish, dead-worker handling, the deadline and the spill.
A transport only says where workers run and carries the worker protocol (executors/messages.py)
to them and back: which slots there are (`open`), how one worker is started (`spawn`, a
`WorkerLink`), how what came back is taken in (`collect`) and how the loop waits (`delay`,
`wait`, `waitables`), and how it is all let go (`close`). A backend plugin (executors/registry.py)
makes a transport; it never sees the ledger's writes.

Built-ins: `ProcessTransport` (a spawned process per device, a pipe and a lifeline; this
module) and the Ray transport (actors on a cluster, executors/ray_backend.py).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from multiprocessing.process import BaseProcess
from typing import Protocol, runtime_checkable

from songbatch.engines.base import EngineSpec
from songbatch.executors.devices import DeviceSlot
from songbatch.executors.messages import FromWorker, ToWorker
from songbatch.executors.worker import WorkerConfig, leave_with_coordinator, worker_main
from songbatch.ledger import Ledger
from songbatch.scheduler import Waitable
from songbatch.signals import STOP_SIGNALS


@runtime_checkable
class WorkerPipe(Protocol):
    """The worker protocol's channel, as a `multiprocessing` Connection is one. Nothing blocks
    but `recv` after `poll` said a message is there."""

    def send(self, message: ToWorker) -> None: ...

    def poll(self) -> bool: ...

    def recv(self) -> FromWorker: ...

    def close(self) -> None: ...


@runtime_checkable
class WorkerProcess(Protocol):
    """A worker's life, as a `multiprocessing` Process shows it."""

    @property
    def exitcode(self) -> int | None: ...

    @property
    def sentinel(self) -> int: ...

    def is_alive(self) -> bool: ...

    def kill(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


@runtime_checkable
class WorkerLink(WorkerPipe, WorkerProcess, Protocol):
    """One worker as the coordinator sees it: its pipe and its process in one. `close` lets go
    of the channel (after the worker is dead or joined)."""


@dataclass(frozen=True)
class PoolContext:
    """What a transport may read of the pool it serves (never write: the ledger is the
    coordinator's)."""

    ledger: Ledger
    specs: dict[str, EngineSpec]
    run_id: int
    manifest_ids: Sequence[int]
    depth: int  # batches the coordinator keeps in flight per worker

    def pending_jobs(self) -> int:
        """Jobs of the pool's manifests waiting now: a transport starts no more workers."""
        from songbatch.ledger import JobState

        counts = self.ledger.state_counts(self.manifest_ids)
        return sum(c.jobs for c in counts if c.state == JobState.PENDING)


class WorkerTransport(Protocol):
    """Where a pool's workers run. `name` is the backend's (what `executor:` says)."""

    name: str

    def open(self, pool: PoolContext) -> list[DeviceSlot]:
        """Connect (a cluster), and the slots to start a worker on, one worker each."""
        ...

    def spawn(self, slot: DeviceSlot) -> WorkerLink:
        """A new worker on `slot` (the first, or a dead one's replacement), starting."""
        ...

    def collect(self, links: Sequence[WorkerLink]) -> None:
        """Once per step, before the coordinator reads the links: take in what came back."""
        ...

    def delay(self, links: Sequence[WorkerLink], delay_s: float) -> float:
        """How long the loop may sleep, given the coordinator's own `delay_s` (its timers)."""
        ...

    def wait(self, links: Sequence[WorkerLink], timeout_s: float) -> None:
        """Block up to `timeout_s` or until a worker has something to say."""
        ...

    def waitables(self, links: Sequence[WorkerLink]) -> list[Waitable]:
        """What a loop shared with other backends waits on (`multiprocessing.connection.wait`):
        readable when a worker has something to say or dies. [] if there is none to give."""
        ...

    def close(self) -> None:
        """After every worker is stopped: let go of what `open` took. Also when `open` failed."""
        ...


# ---------------------------------------------------------------- worker processes


class ProcessLink:
    """A spawned worker process, its duplex pipe, and its lifeline (never written: when the
    coordinator dies, however it dies, the kernel closes it and the worker sees EOF, see
    worker.leave_with_coordinator)."""

    def __init__(self, process: BaseProcess, conn: Connection, lifeline: Connection) -> None:
        self.process = process
        self.conn = conn
        self.lifeline = lifeline

    def send(self, message: ToWorker) -> None:
        self.conn.send(message)

    def poll(self) -> bool:
        return self.conn.poll()

    def recv(self) -> FromWorker:
        message: FromWorker = self.conn.recv()
        return message

    def close(self) -> None:
        self.conn.close()
        self.lifeline.close()

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        self.process.kill()

    def join(self, timeout: float | None = None) -> None:
        self.process.join(timeout)


class ProcessTransport:
    """The local pool's workers: one spawned process per device slot (`--devices`)."""

    name = "local"

    def __init__(self, slots: Sequence[DeviceSlot]) -> None:
        self.slots = list(slots)
        self._context = multiprocessing.get_context("spawn")
        self._specs: dict[str, EngineSpec] = {}

    def open(self, pool: PoolContext) -> list[DeviceSlot]:
        self._specs = pool.specs
        return list(self.slots)

    def spawn(self, slot: DeviceSlot) -> WorkerLink:
        parent, child = self._context.Pipe()
        lifeline_in, lifeline_out = self._context.Pipe(duplex=False)
        config = WorkerConfig(
            name=slot.name,
            device=slot.device,
            env=slot.env,
            specs=self._specs,
            coordinator_pid=os.getpid(),
        )
        process = self._context.Process(
            target=_worker_entry,
            args=(child, lifeline_in, config),
            name=f"songbatch-{slot.name}",
            daemon=True,
        )
        process.start()
        child.close()
        lifeline_in.close()
        return ProcessLink(process, parent, lifeline_out)

    def collect(self, links: Sequence[WorkerLink]) -> None:
        pass  # a pipe holds what a worker sent until it is read

    def delay(self, links: Sequence[WorkerLink], delay_s: float) -> float:
        return delay_s  # a worker's message wakes the loop (`waitables`)

    def wait(self, links: Sequence[WorkerLink], timeout_s: float) -> None:
        wait_for(self.waitables(links), timeout=timeout_s)

    def waitables(self, links: Sequence[WorkerLink]) -> list[Waitable]:
        processes = [link for link in links if isinstance(link, ProcessLink)]
        conns: list[Waitable] = [link.conn for link in processes]
        return conns + [link.sentinel for link in processes]

    def close(self) -> None:
        pass


def _worker_entry(conn: Connection, lifeline: Connection, config: WorkerConfig) -> None:
    # Ctrl-C, a closed terminal and `kill` of a systemd unit reach the whole process group; the
    # coordinator decides what stops (and kills its workers), not each worker.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    leave_with_coordinator(config.coordinator_pid, lifeline)
    worker_main(conn, config)


__all__ = [
    "PoolContext",
    "ProcessLink",
    "ProcessTransport",
    "WorkerLink",
    "WorkerPipe",
    "WorkerProcess",
    "WorkerTransport",
]
