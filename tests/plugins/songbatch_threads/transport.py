"""The `threads` backend's transport: each worker is songbatch's own worker loop
(executors/worker.py) on a thread of this process, over an in-process pipe.

A thread cannot be killed: `kill` closes the coordinator's end of its pipe, and the worker
leaves at its next message (a render in flight finishes into a closed pipe, and the
coordinator, which has already given its lease back, publishes nothing of it). That render may
still write its lease's temp file after the coordinator removed it: one reason this backend is
for tests only, where nothing kills its workers."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for

from songbatch.engines.base import EngineSpec
from songbatch.executors.devices import DeviceSlot
from songbatch.executors.messages import FromWorker, ToWorker
from songbatch.executors.transport import PoolContext, WorkerLink
from songbatch.executors.worker import WorkerConfig, worker_main
from songbatch.scheduler import Waitable

# Every worker started, by slot name, in order: what a test reads to see this backend ran.
SPAWNED: list[str] = []


class ThreadLink:
    def __init__(self, thread: threading.Thread, conn: Connection) -> None:
        self.thread = thread
        self.conn = conn
        self.killed = False

    def send(self, message: ToWorker) -> None:
        self.conn.send(message)

    def poll(self) -> bool:
        return not self.conn.closed and self.conn.poll()

    def recv(self) -> FromWorker:
        message: FromWorker = self.conn.recv()
        return message

    def close(self) -> None:
        self.conn.close()

    @property
    def exitcode(self) -> int | None:
        if self.killed:
            return -9
        return None if self.thread.is_alive() else 0

    @property
    def sentinel(self) -> int:
        return -1  # no file descriptor of its own: its pipe says when it ends (EOF)

    def is_alive(self) -> bool:
        return not self.killed and self.thread.is_alive()

    def kill(self) -> None:
        self.killed = True
        self.conn.close()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)


class ThreadTransport:
    name = "threads"

    def __init__(self, slots: Sequence[DeviceSlot]) -> None:
        self.slots = list(slots)
        self._specs: dict[str, EngineSpec] = {}

    def open(self, pool: PoolContext) -> list[DeviceSlot]:
        self._specs = pool.specs
        return list(self.slots)

    def spawn(self, slot: DeviceSlot) -> WorkerLink:
        parent, child = Pipe()
        # No environment of its own: a thread shares this process's.
        config = WorkerConfig(slot.name, slot.device, {}, self._specs, os.getpid())
        thread = threading.Thread(
            target=_serve, args=(child, config), name=f"songbatch-{slot.name}"
        )
        thread.daemon = True
        thread.start()
        SPAWNED.append(slot.name)
        return ThreadLink(thread, parent)

    def collect(self, links: Sequence[WorkerLink]) -> None:
        pass

    def delay(self, links: Sequence[WorkerLink], delay_s: float) -> float:
        return delay_s

    def wait(self, links: Sequence[WorkerLink], timeout_s: float) -> None:
        wait_for(self.waitables(links), timeout=timeout_s)

    def waitables(self, links: Sequence[WorkerLink]) -> list[Waitable]:
        conns: list[Waitable] = [
            link.conn for link in links if isinstance(link, ThreadLink) and not link.conn.closed
        ]
        return conns

    def close(self) -> None:
        pass


def _serve(conn: Connection, config: WorkerConfig) -> None:
    try:
        worker_main(conn, config)
    except OSError:
        pass  # killed: its pipe was closed under it
    finally:
        conn.close()  # the coordinator's end reads EOF: the worker is gone
