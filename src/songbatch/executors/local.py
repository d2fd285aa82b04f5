"""The pool's coordinator: one long-lived worker per device, fed by this process.

The coordinator owns the ledger. It claims leases, keeps each worker's queue `depth` deep so a
device never waits on it, turns worker progress into lease heartbeats, and publishes finished
files with the fencing check. A worker that dies is replaced; its job goes back to pending.
Where a worker runs is its transport's (executors/transport.py): a spawned process per device
(`ProcessTransport`, the `local` backend), a Ray actor (`ray`), or a plugin's.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from songbatch.engines.base import EngineSpec
from songbatch.errors import EngineUnavailable, SongbatchError
from songbatch.events import Observer, RunEvent, ignore
from songbatch.executors.devices import DeviceSlot
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
    Stop,
    Ticket,
)
from songbatch.executors.publishing import ExecutorSummary
from songbatch.executors.transport import PoolContext, WorkerLink, WorkerTransport
from songbatch.executors.worker import spec_id
from songbatch.fsutil import remove_quietly
from songbatch.jobdesk import JobDesk
from songbatch.ledger import Lease, Ledger, Publication, Route
from songbatch.scheduler import FINISHED, Waitable, drive
from songbatch.window import JobTimes
from songbatch.workspace import Workspace

if TYPE_CHECKING:
    from songbatch.spill import SpillPolicy

# A slot whose worker dies this many times in a row without finishing a job is given up.
MAX_CONSECUTIVE_DEATHS = 5


@dataclass
class ExecutorSettings:
    lease_s: float = 120.0
    max_failures: int = 3
    depth: int = 2
    deadline: float | None = None  # time.monotonic() after which no new job is handed out
    transient_patience_s: float = 900.0  # see ratelimit.TransientPolicy


@dataclass
class _Worker:
    slot: DeviceSlot
    link: WorkerLink  # its pipe and its process, whatever its transport
    ready: bool = False
    queue: deque[Lease] = field(default_factory=deque)  # every lease sent, in order
    batches: list[set[int]] = field(default_factory=list)  # tokens of each batch in flight
    rendering: set[int] = field(default_factory=set)  # tokens of the batch it has started
    last_progress: float = 0.0
    # Per engine (spec id): most jobs per call, as the loaded engine reported it.
    batch_limits: dict[str, int] = field(default_factory=dict)
    consecutive_deaths: int = 0
    kill_reason: str | None = None
    spawned_at: float = field(default_factory=time.monotonic)
    startup_s: float | None = None  # spawn to ready, once: later engine loads start warm


class LocalExecutor:
    """The coordinator of a pool of workers that `transport` starts and reaches."""

    def __init__(
        self,
        ledger: Ledger,
        workspace: Workspace,
        transport: WorkerTransport,
        specs: dict[str, EngineSpec],
        *,
        run_id: int,
        manifest_ids: Sequence[int],
        settings: ExecutorSettings,
        observer: Observer = ignore,
        on_published: Callable[[str], None] = lambda key: None,
        spill: SpillPolicy | None = None,
    ) -> None:
        self.ledger = ledger
        self.workspace = workspace
        self.transport = transport
        self.slots: list[DeviceSlot] = []  # the transport's, once opened (`start`)
        self.specs = specs
        self.run_id = run_id
        self.manifest_ids = list(manifest_ids)
        self.settings = settings
        self.observer = observer
        self.on_published = on_published
        self.summary = ExecutorSummary()
        self._workers: list[_Worker] = []
        self.desk = JobDesk.over(
            ledger, run_id, settings, self.summary, observer, on_published, spill=spill
        )
        self._made_dirs: set[Path] = set()
        self._finished_jobs: list[tuple[str, Lease, RenderedFile]] = []
        self._pool: deque[Lease] = deque()
        self._device_of: dict[str, str] = {}
        # Sticky device errors per slot since it last rendered a job (see worker.poisons).
        self._device_losses: dict[str, int] = {}
        self.job_times = JobTimes()  # device seconds per job, for the deadline (window.py)
        self._tick = min(5.0, settings.lease_s / 4)  # heartbeats
        self._next_beat = 0.0
        # Hybrid runs (spill.py): jobs sent to the spill-over backend are not this pool's, and
        # kinds whose engine does not import here are never claimed.
        self.spill = spill
        kinds: list[str] | None = sorted({spec.kind for spec in specs.values()}) if spill else None
        self._own = self.desk.source(self.manifest_ids, Route.OWN if spill else None, kinds)
        if spill is not None:
            spill.link.on_back(self.desk.undrain)  # jobs came back from the spill-over

    @property
    def name(self) -> str:
        return self.transport.name

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> ExecutorSummary:
        """This pool alone (a preview, a test): the scheduler's loop with one backend."""
        return drive([self])

    # The scheduler's side (scheduler.Backend).

    def start(self) -> None:
        context = PoolContext(
            self.ledger, self.specs, self.run_id, self.manifest_ids, self.settings.depth
        )
        self.slots = self.transport.open(context)  # a cluster's are known once connected
        self._device_of = {slot.name: slot.device for slot in self.slots}
        self.workspace.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._next_beat = time.monotonic() + self._tick
        if self.spill is not None:
            self.spill.start()
        for slot in self.slots:  # one at a time: a stop mid-way kills those started
            self._workers.append(self._spawn(slot))

    def step(self) -> float | None:
        self.transport.collect(self._links())
        for worker in self._workers:
            self._drain(worker)
        self.desk.wake_set_aside()
        self._publish_finished()
        self._reap_dead()
        if time.monotonic() >= self._next_beat:
            self._heartbeat()
            self._next_beat = time.monotonic() + self._tick
        self._check_deadline()
        if self.spill is not None and not self.desk.stopping:
            self.spill.check_deadline(self._capacity(), len(self._pool))
        if not self.desk.stopping:
            self._fill()
        if self._all_done():
            if self.spill is not None:
                self.spill.finished()
            return FINISHED
        timeout = max(0.0, self._next_beat - time.monotonic())
        due = self.desk.set_aside_due() if self.desk.drained else None
        if due is not None:
            timeout = min(timeout, max(0.0, due - self.ledger.clock()))
        return self.transport.delay(self._links(), timeout)

    def wait(self, timeout_s: float) -> None:
        self.transport.wait(self._links(), timeout_s)

    def waitables(self) -> list[Waitable]:
        return self.transport.waitables(self._links())

    def stop_now(self, outcome: str) -> None:
        self._abandon_all(outcome)

    def close(self) -> None:
        try:
            self._shutdown()
        finally:
            self.transport.close()

    def _links(self) -> list[WorkerLink]:
        return [worker.link for worker in self._workers]

    def _spawn(self, slot: DeviceSlot, deaths: int = 0) -> _Worker:
        return _Worker(slot=slot, link=self.transport.spawn(slot), consecutive_deaths=deaths)

    def _shutdown(self) -> None:
        for worker in self._workers:
            if worker.link.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    worker.link.send(Stop())
        for worker in self._workers:
            worker.link.join(timeout=5)
            if worker.link.is_alive():
                worker.link.kill()
                worker.link.join(timeout=5)
            worker.link.close()

    # ------------------------------------------------------------------ the loop

    def _all_done(self) -> bool:
        if any(w.queue for w in self._workers):
            return False
        if self.desk.stopping:
            self._release_pool("stopped")
            return True
        if not self._workers:
            raise SongbatchError("every worker died repeatedly; see the worker errors above")
        # No worker has a job and a claim found nothing more to hand out. A worker still
        # starting is not waited for: it has no job (only a ready one is handed any), and on
        # a cluster at its cap its actor may never be placed.
        if not self.desk.drained or self._pool:
            return False
        # Jobs set aside after a transient fault come due later in this run: wait for them.
        return self.desk.set_aside_due() is None

    def _check_deadline(self) -> None:
        if not self.desk.stopping and self.desk.past_deadline(time.monotonic()):
            self.desk.stop(
                "deadline", "time limit reached: finishing jobs in flight", at_deadline=True
            )

    def _fill(self) -> None:
        refused = 0
        for worker in self._workers:
            while worker.ready and len(worker.batches) < self._depth(worker):
                fits = self._room(worker)
                if fits == 0:
                    refused += 1
                    break
                batch = self._next_batch(worker, fits)
                if not batch:
                    return
                self._send(worker, batch)
        if refused and refused == len(self._workers) and not self.desk.stopping:
            # No device can take another job and finish it in time: stop handing out now, so
            # what is in flight ends by the deadline instead of past it.
            self.desk.stop(
                "deadline",
                "stopping early: the jobs in flight take what is left of the time limit",
                at_deadline=True,
            )

    def _capacity(self) -> int | None:
        """Jobs the pool can still take and finish before the deadline; None while any device
        is unmeasured or there is no deadline."""
        rooms = [self._room(worker) for worker in self._workers]
        if not rooms or any(r is None for r in rooms):
            return None
        return sum(r for r in rooms if r is not None)

    def _room(self, worker: _Worker) -> int | None:
        """Jobs this worker can still take and finish before the deadline (window.room)."""
        return self.desk.room(
            time.monotonic(),
            ahead=len(worker.queue),
            per_job_s=self.job_times.per_job(worker.slot.name),
        )

    def _depth(self, worker: _Worker) -> int:
        """Batches kept in flight. A worker yet to load an engine with `batch_size: auto` gets
        one (a one-job call, which loads it): the next waits for the size it reports."""
        auto = any(spec.batch_auto for spec in self.specs.values())
        return 1 if auto and not worker.batch_limits else self.settings.depth

    def _next_batch(self, worker: _Worker, fits: int | None = None) -> list[Lease]:
        """The next job in claim order, with as many jobs that can share its call
        (`_batchable`) as its engine takes in one call on this worker, and as `fits` before the
        deadline."""
        first = self._next_lease()
        if first is None:
            return []
        batch = [first]
        size = self._batch_size(worker, spec_id(first.kind, first.engine, first.model))
        if fits is not None:
            size = max(1, min(size, fits))
        if len(self._pool) < size - 1 and not self._own.drained:
            self._claim_pool()  # a size reported since the last claim may want more than it got
        for lease in list(self._pool):
            if len(batch) >= size:
                break
            if _batchable(first, lease):
                self._pool.remove(lease)
                batch.append(lease)
        return batch

    def _batch_size(self, worker: _Worker, spec: str) -> int:
        """What the worker's engine reported at load; before that the profile's `batch_size`,
        or one job for `auto` (its first call is what loads the engine and measures it)."""
        if spec in worker.batch_limits:
            return worker.batch_limits[spec]
        return 1 if self.specs[spec].batch_auto else self.specs[spec].batch_size

    def _widest_batch(self) -> int:
        known = [limit for w in self._workers for limit in w.batch_limits.values()]
        known += [spec.batch_size for spec in self.specs.values() if not spec.batch_auto]
        return max(known, default=1)

    def _next_lease(self) -> Lease | None:
        """From a pool of leases claimed together: one transaction serves many jobs."""
        if not self._pool and not self._own.drained:
            self._claim_pool()
        return self._pool.popleft() if self._pool else None

    def _claim_pool(self) -> None:
        want = max(1, len(self._workers) * self.settings.depth * self._widest_batch())
        self._pool.extend(self.desk.claim(self._own, want, worker="coordinator", device="pool"))

    def _send(self, worker: _Worker, batch: list[Lease]) -> None:
        tickets = [self._ticket(lease) for lease in batch]
        worker.queue.extend(batch)
        worker.batches.append({lease.token for lease in batch})
        worker.link.send(Jobs(tickets))

    def _ticket(self, lease: Lease) -> Ticket:
        voice = lease.request.voice
        return Ticket(
            key=lease.key,
            token=lease.token,
            spec_id=spec_id(lease.kind, lease.engine, lease.model),
            request=lease.request,
            tmp_path=str(self.workspace.tmp_path(lease.key, lease.token)),
            voice_path=None if voice is None else str(self.workspace.voice_path(voice)),
        )

    # ------------------------------------------------------------------ messages

    def _record_load(self, worker: _Worker, spec: EngineSpec, load_s: float) -> None:
        """What it took this worker to get to its first render: `cost` calibrates from it."""
        self.ledger.record_load(
            run_id=self.run_id,
            engine=spec.engine,
            model=spec.model,
            device=worker.slot.device,
            startup_s=worker.startup_s or 0.0,
            load_s=load_s,
        )
        worker.startup_s = 0.0

    def _drain(self, worker: _Worker) -> None:
        try:
            while worker.link.poll():
                self._handle(worker, worker.link.recv())
        except (EOFError, OSError):
            pass  # the worker died; _reap_dead deals with it

    def _handle(self, worker: _Worker, message: FromWorker) -> None:
        now = time.monotonic()
        name = worker.slot.name
        match message:
            case Ready(pid):
                worker.ready = True
                worker.last_progress = now
                worker.startup_s = now - worker.spawned_at
                self.observer(RunEvent("worker-ready", worker=name, data={"pid": pid}))
            case Loaded(spec, seconds, limit):
                worker.batch_limits[spec] = limit
                self._record_load(worker, self.specs[spec], seconds)
                data = {"seconds": seconds, "batch_limit": limit}
                self.observer(RunEvent("engine-loaded", worker=name, data=data))
            case BatchLimit(spec, limit):
                worker.batch_limits[spec] = limit
            case Started(tokens):
                worker.rendering = set(tokens)
                worker.last_progress = now
                for token in tokens:
                    lease = self._lease(worker, token)
                    self.observer(RunEvent("job-started", worker=name, job=lease.key))
            case Progress():
                worker.last_progress = now
            case Rendered(token, written):
                self._device_losses.pop(name, None)
                lease = self._pop(worker, token)
                self.job_times.record(name, written.engine_ms / 1000)
                self._finished_jobs.append((name, lease, written))
            case Failed(token, error, retryable, transient):
                self._failed(worker, self._pop(worker, token), error, retryable, transient)
            case DeviceGone(reason):
                # Its jobs were reported set aside; the process exits and _reap_dead replaces it.
                self._device_losses[name] = self._device_losses.get(name, 0) + 1
                worker.kill_reason = f"its device failed ({reason}): a fresh worker takes over"
            case Fatal(token, error):
                kind = self._lease(worker, token).kind
                if self.spill is None or not self.spill.can_take_engine(kind):
                    raise EngineUnavailable(error)
                self._spill_engine(worker, kind, error)

    def _spill_engine(self, worker: _Worker, kind: str, error: str) -> None:
        """A hybrid pool whose engine for `kind` does not load: those jobs go to the
        spill-over backend, and the pool claims no more of them. The worker exits after a
        failed load; its leases go back first, so that they can go across."""
        kinds = self._own.kinds
        assert self.spill is not None and kinds is not None
        worker.kill_reason = f"its {kind} engine did not load ({error})"
        for lease in worker.queue:
            self.desk.requeue(lease)
        worker.queue.clear()
        worker.batches.clear()
        for lease in [lease for lease in self._pool if lease.kind == kind]:
            self._pool.remove(lease)
            self.desk.requeue(lease)
        if kind in kinds:
            kinds.remove(kind)  # the pool claims no more of them
        self.desk.undrain()
        self.observer(
            RunEvent(
                "warning",
                f"{kind} engine did not load on {worker.slot.name} ({error}): its jobs go to"
                " the spill-over backend",
            )
        )
        self.spill.take_engine(kind)

    def _lease(self, worker: _Worker, token: int) -> Lease:
        for lease in worker.queue:
            if lease.token == token:
                return lease
        raise SongbatchError(f"worker {worker.slot.name} reported an unknown lease {token}")

    def _pop(self, worker: _Worker, token: int) -> Lease:
        lease = self._lease(worker, token)
        worker.queue.remove(lease)
        worker.rendering.discard(token)
        for batch in worker.batches:
            batch.discard(token)
        worker.batches = [batch for batch in worker.batches if batch]
        worker.consecutive_deaths = 0
        return lease

    def _publish_finished(self) -> None:
        """Every file that finished since the last wake-up, in one ledger transaction."""
        if not self._finished_jobs:
            return
        batch, self._finished_jobs = self._finished_jobs, []
        items = []
        for worker_name, lease, written in batch:
            final = self.workspace.chunk_path(lease.key)
            if final.parent not in self._made_dirs:
                final.parent.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(final.parent)
            publication = Publication(
                lease,
                self.workspace.tmp_path(lease.key, lease.token),
                final,
                sha256=written.sha256,
                duration_ms=written.duration_ms,
                render_ms=written.render_ms,
                engine_ms=written.engine_ms,
                worker=worker_name,
                device=self._device_of.get(worker_name),
                info=written.info or None,
            )
            items.append((publication, asdict(written)))
        self.desk.publish(items)

    def _failed(
        self, worker: _Worker, lease: Lease, error: str, retryable: bool, transient: bool
    ) -> None:
        remove_quietly(self.workspace.tmp_path(lease.key, lease.token))
        slot = worker.slot
        if transient:
            self.desk.set_aside(lease, error, worker=slot.name, device=slot.device)
        else:
            self.desk.fail(lease, error, retryable=retryable, worker=slot.name, device=slot.device)

    # ------------------------------------------------------------------ deaths and heartbeats

    def _reap_dead(self) -> None:
        survivors: list[_Worker] = []
        for worker in self._workers:
            if worker.link.is_alive():
                survivors.append(worker)
                continue
            self._drain(worker)
            self._requeue(worker)
            worker.link.close()
            self.summary.deaths += 1
            reason = worker.kill_reason or f"exit code {worker.link.exitcode}"
            self.observer(RunEvent("worker-died", reason, worker=worker.slot.name))
            # A device that keeps failing is given up like a worker that keeps dying; its
            # jobs were set aside, so finishing them elsewhere resets neither count.
            losses = self._device_losses.get(worker.slot.name)
            deaths = losses if losses is not None else worker.consecutive_deaths + 1
            if deaths >= MAX_CONSECUTIVE_DEATHS:
                self.observer(RunEvent("worker-gave-up", reason, worker=worker.slot.name))
                continue
            survivors.append(self._spawn(worker.slot, deaths))
        self._workers = survivors

    def _requeue(self, worker: _Worker) -> None:
        """The job being rendered is charged (it may be what killed the worker); queued ones
        are given back free."""
        for lease in worker.queue:
            remove_quietly(self.workspace.tmp_path(lease.key, lease.token))
            if lease.token in worker.rendering:
                self.desk.fail(
                    lease,
                    worker.kill_reason or "worker died while rendering",
                    retryable=True,
                    outcome="expired" if worker.kill_reason else "lost",
                    worker=worker.slot.name,
                    device=worker.slot.device,
                )
            else:
                self.desk.requeue(lease)
        worker.queue.clear()
        worker.batches.clear()
        worker.rendering.clear()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        tokens: list[int] = []
        for worker in self._workers:
            if worker.rendering and now - worker.last_progress > self.settings.lease_s:
                worker.kill_reason = f"no progress for {self.settings.lease_s:.0f} s"
                worker.link.kill()
                continue
            tokens.extend(lease.token for lease in worker.queue)
        tokens.extend(lease.token for lease in self._pool)
        self.desk.renew(tokens)

    def _release_pool(self, outcome: str) -> None:
        while self._pool:
            self.desk.release(self._pool.popleft(), outcome)

    def _abandon_all(self, outcome: str) -> None:
        """Stop now: kill the workers, keep what finished, give every other lease back."""
        for worker in self._workers:
            if worker.link.is_alive():
                worker.link.kill()
        try:
            self._publish_finished()
            self._release_pool(outcome)
            for worker in self._workers:
                for lease in worker.queue:
                    remove_quietly(self.workspace.tmp_path(lease.key, lease.token))
                    self.desk.release(lease, outcome)
                worker.queue.clear()
            # Leases a signal caught between two of the lists above (just claimed, on their
            # way to a worker, just published): known only to the ledger.
            self.desk.release_run(outcome)
        except Exception:
            pass  # the ledger is unreachable; the next run recovers these leases


def _batchable(first: Lease, other: Lease) -> bool:
    """Same engine and model; music also of the same length (one generate makes one length).
    Speech chunks of any length share a call (Chatterbox pads them); the pool is claimed
    longest first, so the chunks that meet in a batch are of similar lengths anyway."""
    if (other.kind, other.engine, other.model) != (first.kind, first.engine, first.model):
        return False
    return first.kind == "speech" or other.est_ms == first.est_ms
