"""The Ray backend: one actor per GPU (or per CPU share) of a Ray cluster, fed by this process.

The coordinator is the local pool's (`LocalExecutor`), unchanged, with this module's
`RayTransport` for its transport (executors/transport.py): this process owns the ledger,
claims leases, keeps each actor's queue two deep (longest first, batched by engine), renews the
leases, publishes with the fencing check, and replaces a worker that dies (giving up after
MAX_CONSECUTIVE_DEATHS). What differs is what a worker is: a Ray actor (`RenderActor`) that
loads each engine once (`worker.Engines`) and renders batches as a worker process does
(`worker.render_batch`), reached through an `_ActorLink` that speaks the worker protocol
(executors/messages.py) over Ray calls instead of a pipe.

- **The ledger stays here.** An actor gets each job's request and the name of its voice file,
  never a path of the workspace: it may run on any node. Its audio comes back through the
  object store as the chunk file's bytes (`audio.encode_chunk`: the same bytes a local worker
  writes), and this process writes them to the lease's temp path and publishes.
- **Ray's retries are off** (`max_restarts=0`, `max_task_retries=0`): a call Ray ran again
  behind the ledger's back would render a job whose lease may already be gone, and a restarted
  actor would take calls meant for the dead one. A dead actor (RayActorError) is a dead worker:
  the job it was rendering goes back charged (`lost`, it may be what killed it), its queued
  jobs go back free, and a new actor takes its place.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from songbatch.engines.base import EngineSpec, JobRequest
from songbatch.errors import InputError, SongbatchError, install_hint
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
    Ticket,
    ToWorker,
)
from songbatch.executors.transport import PoolContext, WorkerLink
from songbatch.executors.worker import (
    PROGRESS_EVERY_S,
    Engines,
    RenderedBatch,
    render_batch,
    rendered_file,
    unwritten,
)
from songbatch.fsutil import write_synced
from songbatch.profiles import ActorDevice, Profile, RayConfig, actor_device
from songbatch.scheduler import Waitable

MISSING = f"songbatch[ray] is not installed: {install_hint('ray')}"
# How often a shared loop looks at the calls in flight (see RayTransport.delay).
POLL_S = 0.05


def check_ray_installed() -> None:
    """Before anything is written: a run that needs Ray and cannot import it is bad input."""
    if importlib.util.find_spec("ray") is None:
        raise InputError(MISSING)


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise InputError(MISSING) from None


# ---------------------------------------------------------------- what crosses the object store


@dataclass(frozen=True)
class RayJob:
    """One leased job, as an actor sees it: no path, since the actor may be on another node."""

    key: str
    token: int
    spec_id: str
    request: JobRequest
    voice: str | None = None  # the voice file's name (its sha256), sent beside the call


@dataclass(frozen=True)
class RenderedAudio:
    token: int
    data: bytes  # the chunk's whole file
    file: RenderedFile  # its sha256 is the coordinator's, from what it wrote


@dataclass(frozen=True)
class ActorReply:
    """What one render call made: the worker's messages for it, and the files' bytes."""

    loaded: Loaded | None = None
    outcomes: list[RenderedAudio | Failed] = field(default_factory=list)
    limit: BatchLimit | None = None
    device_lost: str | None = None
    fatal: str | None = None  # the engine could not be loaded


@dataclass
class _Rendered:
    """A batch the engine has rendered, its files still to encode."""

    loaded: Loaded | None
    batch: RenderedBatch
    limit: BatchLimit | None
    beat: Callable[[], None]

    def reply(self) -> ActorReply:
        from songbatch.audio import encode_chunk

        outcomes: list[RenderedAudio | Failed] = list(self.batch.failed)
        for ticket, result in self.batch.rendered:
            started = time.monotonic()
            try:
                data = encode_chunk(result, key=ticket.key)
            except Exception as exc:
                outcomes.append(unwritten(ticket.token, exc))
                continue
            written = rendered_file(result, "", self.batch.engine_s, time.monotonic() - started)
            outcomes.append(RenderedAudio(ticket.token, data, written))
        self.beat()
        lost = self.batch.device_lost
        return ActorReply(self.loaded, outcomes, self.limit, device_lost=lost)


class RenderActor:
    """A worker as a Ray actor: engines loaded once, batches rendered in the order sent.

    Calls run on threads of their own (the actor's `max_concurrency`), so `beats` answers while
    a batch renders, which is how the coordinator sees progress and keeps a long render's lease
    from looking hung; render calls still take turns, in the order the coordinator numbered
    them, since a device renders one batch at a time."""

    def __init__(self, device: str, env: dict[str, str], specs: dict[str, EngineSpec]) -> None:
        os.environ.update(env)
        os.environ.setdefault("TQDM_DISABLE", "1")
        self.engines = Engines(specs, device)
        self._turn = threading.Condition()
        self._next_call = 0
        self._beats = 0
        self._voices = Path(tempfile.mkdtemp(prefix="songbatch-voices-"))

    def ready(self) -> int:
        return os.getpid()

    def beats(self) -> int:
        """Grows with every progress report of the engine."""
        return self._beats

    def render(self, call: int, jobs: list[RayJob], voices: dict[str, Any]) -> ActorReply:
        with self._turn:
            self._turn.wait_for(lambda: self._next_call == call)
        try:
            done = self._render(jobs, voices)
        finally:
            with self._turn:
                self._next_call += 1
                self._turn.notify_all()
        # Off the device's turn: the next call renders while this one encodes its files, as
        # a worker process's writer thread overlaps them.
        return done if isinstance(done, ActorReply) else done.reply()

    def _render(self, jobs: list[RayJob], voices: dict[str, Any]) -> ActorReply | _Rendered:
        spec = jobs[0].spec_id
        try:
            loading = self._beating() if not self.engines.has(spec) else contextlib.nullcontext()
            with loading:
                engine, loaded = self.engines.get(spec)
        except SongbatchError as exc:
            return ActorReply(fatal=str(exc))
        # An actor writes no file: the temp path is the coordinator's to write.
        tickets = [
            Ticket(job.key, job.token, job.spec_id, job.request, "", self._voice(job, voices))
            for job in jobs
        ]
        batch = render_batch(engine, tickets, self._beat)
        limit = None if batch.device_lost is not None else self.engines.limit_change(spec)
        return _Rendered(loaded, batch, limit, self._beat)

    def _beat(self) -> None:
        self._beats += 1

    @contextlib.contextmanager
    def _beating(self) -> Iterator[None]:
        """Beats while an engine loads. A worker process says its first job started once its
        engine has loaded, so a load (weights fetched on a fresh node: minutes) never counts as
        a hung render; here the coordinator saw the call start before the load, so the load
        has to report progress itself."""
        loading = threading.Event()
        beats = threading.Thread(target=self._beat_until, args=(loading,), daemon=True)
        beats.start()
        try:
            yield
        finally:
            loading.set()
            beats.join()

    def _beat_until(self, done: threading.Event) -> None:
        while not done.wait(PROGRESS_EVERY_S / 2):
            self._beat()

    def _voice(self, job: RayJob, voices: dict[str, Any]) -> str | None:
        """The voice reference on this node, fetched from the object store once."""
        if job.voice is None:
            return None
        path = self._voices / job.voice
        if not path.exists():
            data: bytes = _ray().get(voices[job.voice])
            partial = path.with_suffix(".part")
            partial.write_bytes(data)
            partial.replace(path)  # a call on another thread never reads half a file
        return str(path)


# ---------------------------------------------------------------- the coordinator's side


class _ActorLink:
    """One actor, as the local pool's loop sees a worker: its pipe (`send`, `poll`, `recv`,
    `close`) and its process (`is_alive`, `kill`, `join`, `exitcode`, `sentinel`). Nothing here
    blocks: what has come back is taken in by `collect`, once per step of the executor for all
    its actors (one `ray.wait` for every call in flight, not one per actor and question)."""

    sentinel = -1  # no file descriptor: see RayTransport.waitables
    exitcode: int | None = None

    def __init__(self, ray: Any, actor: Any, voice_ref: Callable[[str], Any]) -> None:
        self._ray = ray
        self.actor = actor
        self._voice_ref = voice_ref
        self._ready: Any = actor.ready.remote()
        self._calls: deque[tuple[Any, list[Ticket]]] = deque()
        self._sent = 0
        self._inbox: deque[FromWorker] = deque()
        self._beat: Any = None
        self._beat_due = 0.0
        self._beats = 0
        self.alive = True

    # The pipe.

    def send(self, message: ToWorker) -> None:
        if not isinstance(message, Jobs) or not self.alive:
            return  # Stop: the coordinator kills what is left when it shuts down
        tickets = message.tickets
        jobs = [RayJob(t.key, t.token, t.spec_id, t.request, _name(t.voice_path)) for t in tickets]
        paths = {t.voice_path for t in tickets if t.voice_path is not None}
        voices = {Path(path).name: self._voice_ref(path) for path in paths}
        self._calls.append((self.actor.render.remote(self._sent, jobs, voices), tickets))
        self._sent += 1
        if len(self._calls) == 1:
            self._inbox.append(Started([t.token for t in tickets]))

    def poll(self) -> bool:
        return bool(self._inbox)

    def recv(self) -> FromWorker:
        if not self.poll():
            raise EOFError("nothing from the actor")
        return self._inbox.popleft()

    def close(self) -> None:
        pass

    # The process.

    def is_alive(self) -> bool:
        return self.alive

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            with contextlib.suppress(Exception):  # already gone, or Ray shut down
                self._ray.kill(self.actor, no_restart=True)

    def join(self, timeout: float | None = None) -> None:
        pass

    # The calls.

    def pending(self) -> list[Any]:
        """The object refs still to come back."""
        if not self.alive:
            return []
        refs = [ref for ref, _ in self._calls]
        return refs + [ref for ref in (self._ready, self._beat) if ref is not None]

    def collect(self, done: set[Any]) -> None:
        """Takes in the calls among `done` (the refs that have finished), in the order sent."""
        if not self.alive:
            return
        try:
            if self._ready is not None and self._ready in done:
                self._inbox.append(Ready(int(self._ray.get(self._ready))))
                self._ready = None
            while self.alive and self._calls and self._calls[0][0] in done:
                ref, tickets = self._calls.popleft()
                self._take(self._ray.get(ref), tickets)
                if self.alive and self._calls:
                    self._inbox.append(Started([t.token for t in self._calls[0][1]]))
            if self._beat is not None and self._beat in done:
                beats = int(self._ray.get(self._beat))
                self._beat = None
                if beats != self._beats and self._calls:
                    self._inbox.append(Progress())
                self._beats = beats
        except self._ray.exceptions.RayError:
            # The actor died (killed, its node lost, out of memory) or its own code failed: a
            # dead worker either way, whose leases the pool gives back (killed, so that one
            # whose code failed does not live on beside its replacement).
            self.kill()
            return
        # Asked of an idle actor too: a death shows within a second, not at the next job.
        if self.alive and self._beat is None and self._ready is None:
            now = time.monotonic()
            if now >= self._beat_due:
                self._beat = self.actor.beats.remote()
                self._beat_due = now + PROGRESS_EVERY_S

    def _take(self, reply: ActorReply, tickets: list[Ticket]) -> None:
        if reply.fatal is not None:
            self._inbox.append(Fatal(tickets[0].token, reply.fatal))
            return
        if reply.loaded is not None:
            self._inbox.append(reply.loaded)
        by_token = {ticket.token: ticket for ticket in tickets}
        for outcome in reply.outcomes:
            if isinstance(outcome, Failed):
                self._inbox.append(outcome)
            else:
                self._inbox.append(_written(by_token[outcome.token], outcome))
        if reply.limit is not None:
            self._inbox.append(reply.limit)
        if reply.device_lost is not None:
            # As a worker process leaves after a sticky device error: a new actor, a new
            # CUDA context. Its later calls go back free with the rest of its queue.
            self._inbox.append(DeviceGone(reply.device_lost))
            self.kill()


def _written(ticket: Ticket, audio: RenderedAudio) -> Rendered | Failed:
    """The actor's file, written where a local worker would have written it."""
    try:
        sha256 = write_synced(Path(ticket.tmp_path), audio.data)
    except Exception as exc:
        return unwritten(ticket.token, exc)
    return Rendered(ticket.token, replace(audio.file, sha256=sha256))


def _name(path: str | None) -> str | None:
    return None if path is None else Path(path).name


class _Connection:
    """Ray, once per process: two Ray backends of one run (CPU actors for a book, GPU actors
    for an album) share it; whoever started it shuts it down after the last one."""

    def __init__(self) -> None:
        self.users = 0
        self.address: str | None = None
        self.owned = False

    def open(self, address: str | None) -> Any:
        ray = _ray()
        if self.users and address != self.address:
            raise InputError(
                f"one run connects to one Ray cluster: {self.address or 'a local Ray'} and"
                f" {address or 'a local Ray'} were both asked for"
            )
        if not ray.is_initialized():
            try:
                ray.init(**_init_options(address))
            except (ConnectionError, RuntimeError) as exc:
                # RuntimeError: what Ray Client raises when the cluster runs another Ray or
                # Python version than this machine (docs/cluster.md, Versions).
                where = address or "a Ray started here"
                said = " ".join(str(exc).split()) or type(exc).__name__
                raise SongbatchError(f"cannot connect to {where}: {said}") from None
            self.owned = True
        self.users += 1
        self.address = address
        return ray

    def close(self, ray: Any) -> None:
        self.users -= 1
        if self.users == 0 and self.owned:
            self.owned = False
            ray.shutdown()


def _init_options(address: str | None) -> dict[str, Any]:
    # Actors' output would land on this process's terminal, under the run's own display:
    # their logs stay in Ray's log folder (the library never prints).
    options: dict[str, Any] = {"address": address, "log_to_driver": False}
    if address is None or not address.startswith("ray://"):
        # Its start-up lines (and its notes on its own set-up) would land in the run's
        # display, which may be JSON lines; Ray's log folder keeps them.
        options["logging_level"] = logging.ERROR
    if address is None:
        options["include_dashboard"] = False  # a Ray started for one run needs no dashboard
    return options


_CONNECTION = _Connection()


class RayTransport:
    """The `ray` backend's transport (executors/transport.py): Ray actors for the pool's
    workers, one per GPU or CPU share of the cluster (see the module's notes)."""

    name = "ray"

    def __init__(self, config: RayConfig, device: ActorDevice) -> None:
        self.config = config
        self.device = device
        self._ray: Any = None
        self._actor_class: Any = None
        self._voice_refs: dict[str, Any] = {}
        self._spawned = 0
        self._pool: PoolContext | None = None

    def open(self, pool: PoolContext) -> list[DeviceSlot]:
        self._pool = pool
        self._ray = _CONNECTION.open(self.config.address)
        self._actor_class = self._ray.remote(RenderActor)
        return self._cluster_slots(pool)

    def delay(self, links: Sequence[WorkerLink], delay_s: float) -> float:
        # Ray gives no file descriptor that a finished call makes readable, so `waitables`
        # has nothing for a loop shared with other backends to wait on: while calls are in
        # flight that loop comes back every POLL_S to look. Alone, `wait` blocks in ray.wait,
        # which returns the moment a call finishes.
        return min(delay_s, POLL_S) if _refs(links) else delay_s

    def wait(self, links: Sequence[WorkerLink], timeout_s: float) -> None:
        refs = _refs(links)
        if refs:
            self._ray.wait(refs, num_returns=1, timeout=timeout_s)
        elif timeout_s > 0:
            time.sleep(timeout_s)  # nothing in flight: only a timer (a retry, a beat) is due

    def waitables(self, links: Sequence[WorkerLink]) -> list[Waitable]:
        return []

    def close(self) -> None:
        if self._ray is not None:
            _CONNECTION.close(self._ray)
            self._ray = None

    def collect(self, links: Sequence[WorkerLink]) -> None:
        refs = _refs(links)
        done = set(self._ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
        for link in _actor_links(links):
            link.collect(done)

    def _cluster_slots(self, pool: PoolContext) -> list[DeviceSlot]:
        """One actor per GPU (or CPU share) the cluster has now, or `actors` of them; never
        more than there are jobs (each would load a model to sit idle)."""
        resources = self._ray.cluster_resources()
        if self.device == "gpu":
            count = self.config.actors or int(resources.get("GPU", 0))
            if count == 0:
                raise SongbatchError(
                    "the Ray cluster has no GPU: set the profile's ray.actors to have its"
                    " autoscaler start GPU nodes, or ray.device: cpu"
                )
            slots = [DeviceSlot(f"ray-gpu{n}", "cuda") for n in range(count)]
        else:
            per_actor = self.config.num_cpus_per_actor
            count = self.config.actors or max(1, int(resources.get("CPU", 1) // per_actor))
            threads = str(max(1, int(per_actor)))
            env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            slots = [
                DeviceSlot(f"ray-cpu{n}", "cpu", {**env, "CUDA_VISIBLE_DEVICES": ""})
                for n in range(count)
            ]
        return slots[: max(1, pool.pending_jobs())]

    def spawn(self, slot: DeviceSlot) -> WorkerLink:
        assert self._pool is not None, "spawn before open"
        resources: dict[str, float] = {"num_cpus": self.config.num_cpus_per_actor}
        if slot.device == "cuda":
            resources["num_gpus"] = 1
        self._spawned += 1
        actor = self._actor_class.options(
            name=f"songbatch-{self._pool.run_id}-{slot.name}-{self._spawned}",
            max_restarts=0,
            max_task_retries=0,
            # Its render calls in flight, and `beats`, each on a thread of its own.
            max_concurrency=self._pool.depth + 1,
            **resources,
        ).remote(slot.device, slot.env, self._pool.specs)
        return _ActorLink(self._ray, actor, self._voice_ref)

    def _voice_ref(self, path: str) -> Any:
        """A voice reference in the object store, put once per run (content-named)."""
        name = Path(path).name
        if name not in self._voice_refs:
            self._voice_refs[name] = self._ray.put(Path(path).read_bytes())
        return self._voice_refs[name]


def ray_transport(profile: Profile, slots: Sequence[DeviceSlot]) -> RayTransport:
    """The `ray` backend's transport for `profile` (its `ray:` section; `slots` unused: the
    actors come from the cluster's resources, never from --devices)."""
    return RayTransport(profile.ray or RayConfig(), actor_device(profile))


def _actor_links(links: Sequence[WorkerLink]) -> list[_ActorLink]:
    return [link for link in links if isinstance(link, _ActorLink)]


def _refs(links: Sequence[WorkerLink]) -> list[Any]:
    return [ref for link in _actor_links(links) for ref in link.pending()]
