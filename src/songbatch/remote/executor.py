"""The remote executor: renders leased jobs as Replicate predictions.

Same shape as the local one: it owns the ledger, claims leases, publishes finished files with the
fencing check and gives leases back on Ctrl-C. Predictions run on Replicate's machines; this loop
only creates, polls, downloads and publishes, one call at a time, so the orchestration is a single
thread whose clock and sleep can be virtual (tests run hours of faults in seconds).

Money rules: before every create the job's worst-case cost is reserved in the ledger under every
cap (one transaction); a prediction that runs past the time its reservation covers is cancelled;
each reservation is settled at what the prediction cost. A create whose reply was lost is
reconciled by listing recent predictions before creating again.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from songbatch import audio
from songbatch.cost import Reservation, settled_cost, worst_case
from songbatch.crashpoints import crash_point
from songbatch.errors import EngineError, Interrupted
from songbatch.events import Observer, RunEvent, ignore
from songbatch.executors.publishing import ExecutorSummary, publish_and_report
from songbatch.ledger import CapReached, Lease, Ledger, Publication, SpendCaps
from songbatch.profiles import RemoteModel, ReplicateConfig
from songbatch.ratelimit import Backoff, RateLimiter, hint_jitter
from songbatch.remote.client import CallFailed, PredictionState, ReplicateApi
from songbatch.remote.mapping import InputError, model_input
from songbatch.remote.reconcile import Adopted, find_prediction, reconcile_open
from songbatch.signals import stop_on_signals
from songbatch.workspace import Workspace

Phase = Literal["create", "reconcile", "poll"]
WORKER = "replicate"


@dataclass
class RemoteSettings:
    max_failures: int = 3
    lease_s: float = 600.0
    deadline: float | None = None  # on the executor's clock: no create after it
    max_spend: float | None = None  # --max-spend, USD for this run
    transient_patience_s: float = 900.0  # see ratelimit.TransientPolicy


@dataclass
class RemoteHooks:
    """What tests and benchmarks replace: the clock, sleep, randomness and the API client."""

    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    api: ReplicateApi | None = None


@dataclass
class RemoteSummary(ExecutorSummary):
    stopped_at_budget: bool = False
    stop_reason: str | None = None
    creates: int = 0
    rate_limited: int = 0
    transient: int = 0
    reconciled: int = 0
    unreconciled: int = 0
    cancelled: int = 0
    spent_usd: float = 0.0


@dataclass
class _Flight:
    lease: Lease
    model: RemoteModel
    input: dict[str, Any]
    audio_s: float
    phase: Phase = "create"
    due: float = 0.0
    reservation: Reservation | None = None
    reservation_id: int | None = None
    prediction_id: str | None = None
    first_try: float | None = None
    sent_at: float = 0.0
    tries: int = 0  # failed tries that count against the retry policy
    creating: bool = False  # a create is on the wire: its outcome is unknown if we stop now
    last_poll: float | None = None
    running_since: float | None = None
    cancel_reason: str | None = None


class RemoteExecutor:
    def __init__(
        self,
        ledger: Ledger,
        workspace: Workspace,
        config: ReplicateConfig,
        *,
        run_id: int,
        manifest_ids: Sequence[int],
        settings: RemoteSettings,
        observer: Observer = ignore,
        on_published: Callable[[str], None] = lambda key: None,
        hooks: RemoteHooks | None = None,
    ) -> None:
        self.ledger = ledger
        self.workspace = workspace
        self.config = config
        self.run_id = run_id
        self.manifest_ids = list(manifest_ids)
        self.settings = settings
        self.observer = observer
        self.on_published = on_published
        self.hooks = hooks or RemoteHooks()
        self.clock = self.hooks.clock
        self.api = self.hooks.api or ReplicateApi(timeout_s=config.timeout_s)
        rate = config.rate_limit
        self.limiter = RateLimiter(rate.creates_per_min, rate.burst, self.clock)
        self.concurrency = rate.concurrency
        policy = config.retry
        self.backoff = Backoff(
            policy.base_s, policy.cap_s, policy.max_attempts, policy.max_total_s, self.hooks.rng
        )
        self.caps = SpendCaps(
            run_usd=_smallest(settings.max_spend, config.max_spend_per_run),
            day_usd=config.max_spend_per_day,
        )
        self.summary = RemoteSummary()
        self._flights: list[_Flight] = []
        self._finished: list[tuple[Publication, dict[str, Any]]] = []
        # Paid predictions whose job awaits publication, by lease token: (reservation, usd, s).
        self._unsettled: dict[int, tuple[int, float, float | None]] = {}
        self._adopted: dict[str, Adopted] = {}
        self._stopping = False
        self._drained = False
        self._next_beat = 0.0

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> RemoteSummary:
        self.workspace.tmp_dir.mkdir(parents=True, exist_ok=True)
        with stop_on_signals():
            try:
                self._adopted = reconcile_open(self.ledger, self.api, self.config, self._note)
                self._loop()
            except KeyboardInterrupt:
                self._interrupt()
                raise Interrupted(
                    "interrupted: predictions in flight cancelled, jobs pending"
                ) from None
            except BaseException:
                self._interrupt()
                raise
            finally:
                self.api.close()
        return self.summary

    def _loop(self) -> None:
        while True:
            now = self.clock()
            self._check_deadline(now)
            if not self._stopping:
                self._fill()
            for flight in [f for f in self._flights if f.due <= now]:
                self._step(flight)
            self._publish()
            self._heartbeat()
            if not self._flights and (self._stopping or self._drained):
                return
            wake = min((f.due for f in self._flights), default=now)
            self.hooks.sleep(max(0.0, wake - self.clock()))

    def _check_deadline(self, now: float) -> None:
        deadline = self.settings.deadline
        if deadline is not None and not self._stopping and now >= deadline:
            self._stop("deadline", "time limit reached: finishing predictions in flight")
            self.summary.stopped_at_deadline = True

    def _stop(self, kind: str, message: str) -> None:
        """No new creates; jobs not yet created go back to pending, created ones finish."""
        self._stopping = True
        self.observer(RunEvent(kind, message))
        for flight in [f for f in self._flights if f.prediction_id is None and not f.creating]:
            if flight.phase == "reconcile":
                continue  # a create may have happened: find out before letting go
            self._settle(flight, 0.0, None, "not-created")
            self.ledger.release(flight.lease, "stopped")
            self._flights.remove(flight)

    # ------------------------------------------------------------------ claiming

    def _fill(self) -> None:
        free = self.concurrency - len(self._flights)
        if free <= 0 or self._drained:
            return
        leases = self.ledger.claim(
            limit=free,
            worker=WORKER,
            device="api",
            lease_s=self.settings.lease_s,
            run_id=self.run_id,
            manifest_ids=self.manifest_ids,
        )
        self._drained = len(leases) < free
        for lease in leases:
            flight = self._flight(lease)
            if flight is not None:
                self._flights.append(flight)

    def _flight(self, lease: Lease) -> _Flight | None:
        model = self._model_for(lease)
        try:
            voice = self._voice_url(lease)
            values = model_input(model, lease.request, voice)
        except (InputError, CallFailed) as exc:
            retryable = isinstance(exc, CallFailed) and exc.kind != "fatal"
            self._fail(lease, f"[input] {exc}", retryable=retryable)
            return None
        flight = _Flight(lease, model, values, lease.est_ms / 1000, due=self.clock())
        adopted = self._adopted.pop(lease.key, None)
        if adopted is not None:
            flight.phase, flight.prediction_id = "poll", adopted.prediction_id
            flight.reservation_id = adopted.reservation_id
            flight.reservation = Reservation(
                usd=adopted.reserved_usd,
                cancel_after_s=max(0.0, adopted.reserved_s - self.config.cancel_grace_s),
                reserved_s=adopted.reserved_s,
            )
        return flight

    def _model_for(self, lease: Lease) -> RemoteModel:
        name = lease.model
        if lease.kind == "music" and lease.request.get("lyrics") and self.config.lyrics_model:
            name = self.config.lyrics_model
        return self.config.models[name]

    def _voice_url(self, lease: Lease) -> str | None:
        """Each voice file is uploaded once (keyed by its hash) and its URL reused."""
        sha = lease.request.get("voice")
        if not sha:
            return None
        url = self.ledger.upload_url(sha)
        if url is None:
            url, expires = self.api.upload(self.workspace.voice_path(sha))
            self.ledger.record_upload(sha, url, expires)
        return url

    # ------------------------------------------------------------------ one step of a job

    def _step(self, flight: _Flight) -> None:
        if flight.phase == "create":
            self._create(flight)
        elif flight.phase == "reconcile":
            self._reconcile(flight)
        else:
            self._poll(flight)

    def _create(self, flight: _Flight) -> None:
        if self._stopping:
            return
        wait = self.limiter.wait_s()
        if wait > 0:
            # At least a millisecond: a wait below the clock's resolution would never pass.
            flight.due = self.clock() + max(wait, 1e-3)
            return
        if flight.reservation_id is None and not self._reserve(flight):
            return
        crash_point("after-reserve")
        self.limiter.take()
        now = self.clock()
        flight.first_try = flight.first_try or now
        flight.sent_at = now
        flight.creating = True
        self.summary.creates += 1
        try:
            state = self.api.create(flight.model.ref, flight.input)
        except CallFailed as exc:
            flight.creating = False
            self._create_failed(flight, exc)
            return
        flight.creating = False
        crash_point("after-create")
        self._created(flight, state.id)

    def _reserve(self, flight: _Flight) -> bool:
        reservation = worst_case(self.config, flight.model, flight.input, flight.audio_s)
        try:
            flight.reservation_id = self.ledger.reserve(
                job_key=flight.lease.key,
                token=flight.lease.token,
                run_id=self.run_id,
                model=flight.model.ref,
                model_input=flight.input,
                usd=reservation.usd,
                seconds=reservation.reserved_s,
                caps=self.caps,
            )
        except CapReached as exc:
            self.summary.stopped_at_budget = True
            self.summary.stop_reason = str(exc)
            self._stop("warning", f"budget: {exc}; stopping, the rest stays pending")
            return False
        flight.reservation = reservation
        return True

    def _created(self, flight: _Flight, prediction_id: str) -> None:
        self.ledger.attach_prediction(int(flight.reservation_id or 0), prediction_id)
        flight.prediction_id = prediction_id
        flight.phase = "poll"
        flight.due = self.clock() + self.config.poll_s
        self.observer(RunEvent("job-started", worker=WORKER, job=flight.lease.key))

    def _create_failed(self, flight: _Flight, exc: CallFailed) -> None:
        now = self.clock()
        if exc.kind == "rate-limited":
            self.summary.rate_limited += 1
            hint = exc.hint_s if exc.hint_s is not None else self.backoff.delay(1)
            self.limiter.block(hint_jitter(hint, self.hooks.rng))
            flight.due = self.limiter.blocked_until
            if now - (flight.first_try or now) >= self.config.retry.max_total_s:
                self._give_up(flight, f"[rate-limited] still throttled after retries: {exc}")
            return
        if exc.kind == "fatal":
            self._give_up(flight, f"[http-{exc.status}] {exc}")
            return
        self.summary.transient += 1
        flight.tries += 1
        if self.backoff.gives_up(flight.tries, now - (flight.first_try or now)):
            if exc.kind == "unknown-outcome":
                flight.phase = "reconcile"  # one last look before giving up
                flight.due = now
                return
            self._give_up(flight, f"[transient] gave up after {flight.tries} tries: {exc}")
            return
        flight.phase = "reconcile" if exc.kind == "unknown-outcome" else "create"
        flight.due = now + self.backoff.delay(flight.tries)

    def _reconcile(self, flight: _Flight) -> None:
        """The last create's reply was lost: did it create a prediction?"""
        try:
            found = find_prediction(
                self.api, flight.model.ref, flight.input, since=flight.sent_at - 60
            )
        except CallFailed as exc:
            flight.tries += 1
            if self.backoff.gives_up(flight.tries, self.clock() - (flight.first_try or 0)):
                self.summary.unreconciled += 1
                self._give_up(flight, f"[unknown-outcome] could not list predictions: {exc}", 0)
                return
            flight.due = self.clock() + self.backoff.delay(flight.tries)
            return
        if found is not None:
            self.summary.reconciled += 1
            self._created(flight, found.id)
            return
        if self._stopping:
            self._settle(flight, 0.0, None, "not-created")
            self.ledger.release(flight.lease, "stopped")
            self._drop(flight)
            return
        if self.backoff.gives_up(flight.tries, self.clock() - (flight.first_try or 0)):
            self._give_up(flight, f"[transient] gave up after {flight.tries} tries", 0.0)
            return
        flight.phase = "create"  # nothing was created: the reservation still covers a create
        flight.due = self.clock()

    def _poll(self, flight: _Flight) -> None:
        now = self.clock()
        try:
            state = self.api.get(str(flight.prediction_id))
        except CallFailed:
            flight.due = now + self.config.poll_s
            return
        if not state.terminal:
            self._watch(flight, state, now)
            return
        self._finish(flight, state)

    def _watch(self, flight: _Flight, state: PredictionState, now: float) -> None:
        """Cancel a prediction whose predict time reaches what its reservation covers. Its start
        is taken as the last poll that still saw it queued, or, when the first poll already sees
        it running, the create (whose reply saw it queued): early, so the cancel is never late.
        An adopted prediction (created by an earlier run) has no create time here: first poll."""
        if state.status == "processing" and flight.running_since is None:
            if flight.last_poll is not None:
                flight.running_since = flight.last_poll
            else:
                flight.running_since = flight.sent_at or now
        flight.last_poll = now
        flight.due = now + self.config.poll_s
        limit = flight.reservation.cancel_after_s if flight.reservation else None
        running = flight.running_since
        if limit is None or running is None or flight.cancel_reason is not None:
            return
        if now - running + self.config.poll_s >= limit:
            flight.cancel_reason = f"cancelled: ran past the {limit:.0f} s its reservation covers"
            self.summary.cancelled += 1
            with contextlib.suppress(CallFailed):
                self.api.cancel(str(flight.prediction_id))

    def _finish(self, flight: _Flight, state: PredictionState) -> None:
        succeeded = state.status == "succeeded"
        usd = self._cost(flight, state, succeeded)
        if not succeeded:
            self._settle(flight, usd, state.predict_s, state.status)
            self._drop(flight)
            if state.status == "failed":
                self._fail(flight.lease, f"[model-error] {state.error or 'no message'}", False)
            elif flight.cancel_reason:
                self._fail(flight.lease, f"[over-time] {flight.cancel_reason}", False)
            else:
                self._fail(
                    flight.lease, f"[{state.status}] the prediction was {state.status}", True
                )
            return
        try:
            result = self.api.fetch(state.output)
            tmp = self.workspace.tmp_path(flight.lease.key, flight.lease.token)
            sha256 = audio.write_chunk(tmp, result, key=flight.lease.key)
        except (CallFailed, EngineError) as exc:
            self._settle(flight, usd, state.predict_s, "undecodable")
            self._drop(flight)
            retryable = not isinstance(exc, EngineError) or exc.retryable
            self._fail(flight.lease, f"[output] {exc}", retryable)
            return
        # Settled after its job is published (see _publish), never before: killed in between,
        # the reservation stays open with its prediction id, and the next run's reconcile
        # settles it at its cost instead of paying for the job again.
        if flight.reservation_id is not None:
            self._unsettled[flight.lease.token] = (flight.reservation_id, usd, state.predict_s)
            flight.reservation_id = None
        self._drop(flight)
        self._queue_publication(flight, state, tmp, sha256, result.duration_s, usd)

    def _queue_publication(
        self,
        flight: _Flight,
        state: PredictionState,
        tmp: Path,
        sha256: str,
        duration_s: float,
        usd: float,
    ) -> None:
        predict_ms = None if state.predict_s is None else round(state.predict_s * 1000)
        final = self.workspace.chunk_path(flight.lease.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        info = {"prediction": state.id, "model": flight.model.ref, "predict_ms": predict_ms}
        publication = Publication(
            flight.lease,
            tmp,
            final,
            sha256=sha256,
            duration_ms=round(duration_s * 1000),
            render_ms=predict_ms or 0,
            cost_usd=0.0,  # the settle that follows the publish adds it to the attempt
            worker=WORKER,
            device=flight.model.ref,
            info=info,
        )
        data = {"duration_ms": publication.duration_ms, "render_ms": publication.render_ms}
        self._finished.append((publication, data | {"cost_usd": usd}))

    # ------------------------------------------------------------------ ledger writes

    def _cost(self, flight: _Flight, state: PredictionState, succeeded: bool) -> float:
        reserved = flight.reservation.usd if flight.reservation else 0.0
        return settled_cost(
            self.config,
            flight.model,
            flight.input,
            succeeded=succeeded,
            predict_s=state.predict_s,
            reserved_usd=reserved,
        )

    def _settle(self, flight: _Flight, usd: float, predict_s: float | None, outcome: str) -> None:
        if flight.reservation_id is None:
            return
        reservation_id, flight.reservation_id = flight.reservation_id, None
        self._close_reservation(reservation_id, usd, predict_s, outcome, flight.lease.token)

    def _close_reservation(
        self, reservation_id: int, usd: float, predict_s: float | None, outcome: str, token: int
    ) -> None:
        predict_ms = None if predict_s is None else round(predict_s * 1000)
        self.ledger.settle(
            reservation_id, usd=usd, predict_ms=predict_ms, outcome=outcome, token=token
        )
        self.summary.spent_usd += usd
        crash_point("after-settle")

    def _give_up(self, flight: _Flight, error: str, usd: float = 0.0) -> None:
        """No prediction exists (or none can be found): the reservation closes at `usd`."""
        self._settle(flight, usd, None, "not-created")
        self._drop(flight)
        self._fail(flight.lease, error, False)

    def _fail(self, lease: Lease, error: str, retryable: bool) -> None:
        state = self.ledger.fail(
            lease,
            error,
            retryable=retryable,
            max_failures=self.settings.max_failures,
            worker=WORKER,
        )
        if state == "failed":
            self.summary.failed += 1
        elif state == "pending":
            self.summary.retried += 1
            self._drained = False
        self.observer(
            RunEvent("job-failed", error, worker=WORKER, job=lease.key, data={"state": state})
        )

    def _drop(self, flight: _Flight) -> None:
        if flight in self._flights:
            self._flights.remove(flight)

    def _publish(self) -> None:
        if not self._finished:
            return
        batch, self._finished = self._finished, []
        publish_and_report(self.ledger, batch, self.summary, self.observer, self.on_published)
        for publication, _ in batch:  # published or discarded, the prediction was paid for
            token = publication.lease.token
            unsettled = self._unsettled.pop(token, None)
            if unsettled is not None:
                reservation_id, usd, predict_s = unsettled
                self._close_reservation(reservation_id, usd, predict_s, "succeeded", token)

    def _heartbeat(self) -> None:
        now = self.clock()
        if now < self._next_beat:
            return
        self._next_beat = now + self.settings.lease_s / 4
        self.ledger.heartbeat([f.lease.token for f in self._flights], self.settings.lease_s)

    def _note(self, kind: str, message: str) -> None:
        if kind == "unreconciled":
            self.summary.unreconciled += 1
        elif kind == "reconciled":
            self.summary.reconciled += 1
        self.observer(RunEvent("warning" if kind == "unreconciled" else "reconcile", message))

    # ------------------------------------------------------------------ stopping now

    def _interrupt(self) -> None:
        """Ctrl-C, SIGTERM or an error: cancel what runs, keep what finished, give leases back.
        A cancelled prediction's reservation stays open: the next run settles it at its real
        cost. A reservation whose create was on the wire stays open too, to be reconciled."""
        try:
            self._publish()
            for flight in list(self._flights):
                if flight.prediction_id is not None:
                    with contextlib.suppress(CallFailed, OSError):
                        self.api.cancel(flight.prediction_id)
                elif not flight.creating and flight.phase == "create":
                    self._settle(flight, 0.0, None, "not-created")
                self.ledger.release(flight.lease, "interrupted")
            self._flights.clear()
        except Exception:
            pass  # the ledger or the API is unreachable; the next run reconciles


def _smallest(*caps: float | None) -> float | None:
    present = [cap for cap in caps if cap is not None]
    return min(present) if present else None
