"""The remote executor: renders leased jobs as Replicate predictions.

Same shape as the local one: it owns the ledger, claims leases, publishes finished files with the
fencing check and gives leases back on Ctrl-C. Predictions run on Replicate's machines; this loop
only creates, polls, downloads, cancels and publishes. The HTTP calls run side by side on a
bounded pool of threads (calls.py, `rate.connections`); every decision and every ledger write
stays on this one thread, which applies each reply as it comes back. Polls of many predictions
share one call, a page of the predictions list. Clock and sleep can be virtual: on a virtual
clock calls take no time (tests run hours of faults in seconds).

Money rules: before every create the job's worst-case cost is reserved in the ledger under every
cap (one transaction); a prediction that runs past the time its reservation covers is cancelled;
each reservation is settled at what the prediction cost. A create whose reply was lost is
reconciled by listing recent predictions before creating again.

Fault rules (transient is not permanent): a call that fails for the environment's reasons
(connection, DNS, timeouts, 5xx, throttling) is retried under the profile's retry policy; once
that is spent the job is set aside uncharged (Ledger.defer, ratelimit.TransientPolicy) and tried
again later in this run or in the next. Only the job's own causes fail it: the model's error, an
over-time cancel, a 4xx refusing its input. A 401/403 stops the run (RemoteRefused). A job set
aside with its prediction, or its create's outcome, unresolved keeps its open reservation and
picks that up when claimed again, so no set-aside job is ever created twice.
"""

from __future__ import annotations

import functools
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from songbatch import audio
from songbatch.cost import Reservation, remote_model_name, settled_cost, worst_case
from songbatch.crashpoints import crash_point
from songbatch.errors import EngineError, RemoteRefused
from songbatch.events import Observer, RunEvent, ignore
from songbatch.executors.publishing import ExecutorSummary
from songbatch.fsutil import remove_quietly
from songbatch.jobdesk import ClaimSource, JobDesk
from songbatch.ledger import CapReached, Lease, Ledger, Publication, Route, SpendCaps
from songbatch.profiles import RemoteModel, ReplicateConfig
from songbatch.ratelimit import Backoff, RateLimiter, hint_jitter
from songbatch.remote.calls import (
    CallPool,
    Calls,
    HandOver,
    Reply,
    one_by_one,
    run_together,
    side_by_side,
)
from songbatch.remote.client import Api, CallFailed, PredictionState, ReplicateApi, listed
from songbatch.remote.mapping import InputError, model_input
from songbatch.remote.reconcile import Adopted, find_prediction, reconcile_open
from songbatch.scheduler import FINISHED, Waitable, drive
from songbatch.window import JobTimes
from songbatch.workspace import Workspace

if TYPE_CHECKING:
    import httpx

    from songbatch.spill import SpillLink

Phase = Literal["create", "reconcile", "poll"]
# over-time: seen running past its covered time (the job's fault, not retried); unobserved: polls
# failed and the time since its create reached the covered time; abandoned: polls kept failing.
CancelKind = Literal["over-time", "unobserved", "abandoned"]
WORKER = "replicate"
# How far before our earliest create a page of the list may stop: the server's clock, not ours.
LIST_SLACK_S = 60.0
T = TypeVar("T")


@dataclass
class RemoteSettings:
    max_failures: int = 3
    lease_s: float = 600.0
    deadline: float | None = None  # on the executor's clock: no create after it
    max_spend: float | None = None  # --max-spend, USD for this run
    transient_patience_s: float = 900.0  # see ratelimit.TransientPolicy


@dataclass
class RemoteHooks:
    """What tests and benchmarks replace: the clock (epoch seconds, shared with the ledger while
    the executor runs), sleep, randomness, the API client, or only the HTTP transport under the
    real client (network faults such as a DNS outage). `virtual`: the clock is virtual, so calls
    take no time on it (the loop waits for their replies before its clock moves on). `calls`
    replaces the pool of threads the calls run on (a test's in-process, seeded interleaving)."""

    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    api: Api | None = None
    transport: httpx.BaseTransport | None = None
    virtual: bool = False
    calls: Calls | None = None


@dataclass
class RemoteSummary(ExecutorSummary):
    creates: int = 0
    rate_limited: int = 0
    transient: int = 0
    poll_errors: int = 0
    abandoned: int = 0  # predictions no longer polled in this run (polls kept failing)
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
    last_poll: float | None = None  # the last poll that answered
    running_since: float | None = None
    poll_failures: int = 0  # failed polls in a row
    failing_since: float | None = None
    cancel_kind: CancelKind | None = None
    cancel_reason: str | None = None
    cancel_at: float | None = None
    cancel_sent: bool = False
    busy: bool = False  # a call for it is on the wire: no other goes out until it is back
    gone: bool = False  # no longer the executor's (published, failed, set aside, let go)
    poll_alone: bool = False  # polled by its own GET: the last list failed or did not show it


@dataclass(frozen=True)
class _Resume:
    """A job set aside with an open reservation whose prediction (or create) is unresolved: when
    claimed again it polls that prediction (or lists for it) instead of creating a new one."""

    reservation_id: int
    reservation: Reservation
    prediction_id: str | None
    sent_at: float
    cancel_kind: CancelKind | None = None
    cancel_reason: str | None = None

    @classmethod
    def of(cls, flight: _Flight) -> _Resume:
        assert flight.reservation_id is not None and flight.reservation is not None
        # A cancel that never reached the server is not carried: when the job comes back and
        # the prediction answers again, it is watched afresh rather than cancelled on sight.
        sent = flight.cancel_sent or flight.cancel_kind != "abandoned"
        return cls(
            flight.reservation_id,
            flight.reservation,
            flight.prediction_id,
            flight.sent_at,
            flight.cancel_kind if sent else None,
            flight.cancel_reason if sent else None,
        )

    def apply(self, flight: _Flight, now: float) -> None:
        flight.reservation_id, flight.reservation = self.reservation_id, self.reservation
        flight.prediction_id, flight.sent_at = self.prediction_id, self.sent_at
        flight.first_try = now  # a fresh retry budget: the job waited its set-aside delay
        flight.phase = "reconcile" if self.prediction_id is None else "poll"
        flight.cancel_kind, flight.cancel_reason = self.cancel_kind, self.cancel_reason
        flight.cancel_at = now if self.cancel_kind is not None else None
        # Sent again when it is an over-time one; an abandoned one was sent already.
        flight.cancel_sent = self.cancel_kind == "abandoned"


class RemoteExecutor:
    name = "replicate"

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
        spill: SpillLink | None = None,
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
        rate = config.rate_limit
        self.api: Api = self.hooks.api or ReplicateApi(
            timeout_s=config.timeout_s, transport=self.hooks.transport, connections=rate.connections
        )
        self.calls: Calls = self.hooks.calls or CallPool(
            rate.connections, self.clock, virtual=self.hooks.virtual
        )
        self.limiter = RateLimiter(rate.creates_per_min, rate.burst, self.clock)
        self.concurrency = rate.concurrency
        policy = config.retry
        self.backoff = Backoff(
            policy.base_s, policy.cap_s, policy.max_attempts, policy.max_total_s, self.hooks.rng
        )
        # A cancelled prediction should end within the cancel's grace; past this it is let go.
        self.cancel_wait_s = config.cancel_grace_s + policy.max_attempts * config.poll_s
        self.caps = SpendCaps(
            run_usd=_smallest(settings.max_spend, config.max_spend_per_run),
            day_usd=config.max_spend_per_day,
            hour_usd=config.max_spend_per_hour,
        )
        self.summary = RemoteSummary()
        self.desk = JobDesk.over(
            ledger, run_id, settings, self.summary, observer, on_published, rng=self.hooks.rng
        )
        self._own = self.desk.source(self.manifest_ids)
        self._flights: list[_Flight] = []
        self._finished: list[tuple[Publication, dict[str, Any]]] = []
        # Paid predictions whose job awaits publication, by lease token: (reservation, usd, s).
        self._unsettled: dict[int, tuple[int, float, float | None]] = {}
        self._resume: dict[str, _Resume] = {}
        self._next_beat = 0.0
        # A 401/403 came back: nothing more is sent; the calls on the wire come back first.
        self._refused: RemoteRefused | None = None
        self._list_failures = 0  # failed lists in a row: lists back off, polls go one by one
        self._list_after = 0.0
        self._stopped_now = threading.Event()  # an interrupt: downloads leave no temp file
        self._ledger_clock = ledger.clock
        # Seconds from create to a downloaded file, for the deadline (window.py): flights run
        # side by side, so each is a lane of its own with nothing ahead of it.
        self.job_times = JobTimes()
        # Hybrid runs (spill.py): jobs the local pools send here, claimed apart from this
        # backend's own manifests' (their leases name the spill-over profile's model).
        self.spill = spill
        self._routed = None if spill is None else self.desk.source(spill.manifest_ids, Route.SPILL)

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> RemoteSummary:
        """Replicate alone (a test, a benchmark): the scheduler's loop with one backend."""
        drive([self])
        return self.summary

    # The scheduler's side (scheduler.Backend).

    def start(self) -> None:
        self.workspace.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Set-aside and lease due times are written and compared by the ledger on its clock;
        # this loop sleeps on its own. They must be one clock, or a delay in virtual time (the
        # tests') would never come due in the ledger's. Safe: both clocks are epoch seconds
        # (equal in production, where a local pool may share the ledger in the same loop; a
        # virtual clock is only ever this backend's alone), and the ledger's own clock is back
        # before render() writes again.
        self._ledger_clock, self.ledger.clock = self.ledger.clock, self.clock
        # Side by side, as the run's own calls go; a test's seeded stand-in calls in turn.
        rate = self.config.rate_limit
        gather = one_by_one if self.hooks.calls is not None else side_by_side(rate.connections)
        adopted = reconcile_open(self.ledger, self.api, self.config, self._note, gather)
        self._resume = {key: self._resumed(a) for key, a in adopted.items()}

    def step(self) -> float | None:
        now = self.clock()
        if self._routed is not None and self.spill is not None and self.spill.take_fresh():
            self._routed.drained = False
        if self._refused is None:
            self._check_deadline(now)
            self.desk.wake_set_aside()
            if not self.desk.stopping:
                self._fill()
            self._dispatch(now)
        self._publish()
        self._heartbeat()
        if self._refused is not None:
            if not self.calls.busy:
                raise self._refused
            wake = None
        else:
            wake = self._next_wake(now)
        if wake is None:
            # A local pool that may still send work: only its step (or a reply) brings more.
            waiting = self.calls.busy or (self.spill is not None and self.spill.open)
            return math.inf if waiting else FINISHED
        return max(0.0, wake - self.clock())

    def wait(self, timeout_s: float) -> None:
        """Until the next reply or `timeout_s`, whichever comes first. With nothing on the wire
        no reply can come, so the clock's own sleep serves (a virtual clock moves only there)."""
        if self.calls.busy:
            until = None if math.isinf(timeout_s) else self.clock() + timeout_s
            self._deliver(self.calls.replies(until))
        elif timeout_s > 0 and not math.isinf(timeout_s):
            self.hooks.sleep(timeout_s)

    def waitables(self) -> list[Waitable]:
        return [self.calls.waitable()]

    def stop_now(self, outcome: str) -> None:
        # Leases go back as "interrupted" whatever stopped the run: a prediction that may
        # have been created is cancelled and its reservation left to the next run's reconcile.
        self._interrupt()

    def close(self) -> None:
        self.calls.close()
        self.api.close()
        self.ledger.clock = self._ledger_clock

    def _resumed(self, adopted: Adopted) -> _Resume:
        reservation = Reservation(
            usd=adopted.reserved_usd,
            cancel_after_s=max(0.0, adopted.reserved_s - self.config.cancel_grace_s),
            reserved_s=adopted.reserved_s,
        )
        # The reservation was written before its create: time since then bounds the running.
        return _Resume(
            adopted.reservation_id, reservation, adopted.prediction_id, adopted.reserved_at
        )

    def _deliver(self, replies: list[HandOver]) -> None:
        for hand_over in replies:
            try:
                hand_over()
            except RemoteRefused as exc:
                # Every later call would meet it too: none goes out, and the calls on the wire
                # come back first, so a create that went through is recorded, not guessed.
                self._refused = self._refused or exc

    def _next_wake(self, now: float) -> float | None:
        """When to look again; None when nothing is left for this run but jobs parked for the
        next one (or only replies can change anything). Waiting for set-aside jobs ends at the
        time limit (and they end within the patience, after which they are parked)."""
        # A flight waiting for a free connection waits for a reply, not for a time.
        times = [f.due for f in self._flights if not f.busy] if self.calls.free else []
        if not self.desk.stopping and len(self._flights) < self.concurrency:
            if not self.desk.drained:
                times.append(now)  # a claim may find more at once
            else:
                retry = self.desk.set_aside_due()
                if retry is not None:
                    # Due times are stored to the microsecond: wake just past, never just before.
                    times.append(retry + 1e-3)
        waiting = times or self.calls.busy
        if waiting and not self.desk.stopping and self.settings.deadline is not None:
            times.append(self.settings.deadline)
        if self.calls.busy and self._flights:
            times.append(self._next_beat)  # leases are renewed while replies are awaited too
        return min(times) if times else None

    def _check_deadline(self, now: float) -> None:
        if not self.desk.stopping and self.desk.past_deadline(now):
            self._stop(
                "deadline", "time limit reached: finishing predictions in flight", at_deadline=True
            )
            for flight in self._flights:
                if flight.poll_failures or flight.phase == "reconcile":
                    # Waiting out a backoff now would overrun the limit: one more look, and
                    # past the limit a failure lets go (_gives_up).
                    flight.due = min(flight.due, now)

    def _stop(self, kind: str, message: str, *, at_deadline: bool = False) -> None:
        """No new creates; jobs not yet created go back to pending, created ones finish."""
        self.desk.stop(kind, message, at_deadline=at_deadline)
        for flight in [f for f in self._flights if f.prediction_id is None and not f.busy]:
            if flight.phase == "reconcile":
                continue  # a create may have happened: find out before letting go
            self._let_go(flight)

    def _let_go(self, flight: _Flight) -> None:
        """Surely not created (no create on the wire, none that may have happened): its
        reservation closes at zero and its lease goes back, uncharged."""
        self._settle(flight, 0.0, None, "not-created")
        self.desk.release(flight.lease, "stopped")
        self._drop(flight)

    # ------------------------------------------------------------------ claiming

    def _fill(self) -> None:
        free = self.concurrency - len(self._flights)
        if free <= 0 or self.desk.drained:
            return
        fits = self.desk.room(self.clock(), ahead=0, per_job_s=self.job_times.per_job())
        if fits == 0:
            # A prediction created now would end past the deadline: what is in flight ends
            # before it, and nothing new starts.
            self._stop(
                "deadline",
                "stopping early: a new prediction would end past the time limit",
                at_deadline=True,
            )
            return
        leases = []
        if not self._own.drained:
            leases = self._claim(self._own, free)
        routed, spill = self._routed, self.spill
        if routed is not None and spill is not None and not routed.drained and len(leases) < free:
            sent = self._claim(routed, free - len(leases))
            leases += [spill.remote_lease(lease) for lease in sent]
        for index, lease in enumerate(leases):
            try:
                flight = self._flight(lease)
            except BaseException:
                # Refused, interrupted: these leases are no flight yet, so _interrupt misses them.
                for left in leases[index:]:
                    self.desk.release(left, "interrupted")
                raise
            if flight is not None:
                self._flights.append(flight)

    def _claim(self, source: ClaimSource, limit: int) -> list[Lease]:
        return self.desk.claim(source, limit, worker=WORKER, device="api")

    def _flight(self, lease: Lease) -> _Flight | None:
        model = self._model_for(lease)
        try:
            voice = self._voice_url(lease)
            values = model_input(model, lease.request, voice)
        except InputError as exc:
            self._fail(lease, f"[input] {exc}", retryable=False)
            return None
        except CallFailed as exc:
            if exc.kind in ("fatal", "bad-output"):
                self._fail(lease, f"[input] {exc}", retryable=False)
            else:
                self._set_aside(lease, f"[transient] voice upload: {exc}")
            return None
        now = self.clock()
        flight = _Flight(lease, model, values, lease.est_ms / 1000, due=now)
        resume = self._resume.pop(lease.key, None)
        if resume is not None:
            resume.apply(flight, now)
        return flight

    def _model_for(self, lease: Lease) -> RemoteModel:
        name = remote_model_name(self.config, lease.kind, lease.model, lease.request)
        return self.config.models[name]

    def _voice_url(self, lease: Lease) -> str | None:
        """Each voice file is uploaded once (keyed by its hash) and its URL reused."""
        sha = lease.request.voice
        if not sha:
            return None
        url = self.ledger.upload_url(sha)
        if url is None:
            url, expires = self.api.upload(self.workspace.voice_path(sha))
            self.ledger.record_upload(sha, url, expires)
        return url

    # ------------------------------------------------------------------ sending calls

    def _dispatch(self, now: float) -> None:
        """Each flight that is due and has no call on the wire takes its next step, while a
        connection is free. Polls first: one list answers for many."""
        self._poll_together(now)
        for flight in [f for f in self._flights if f.due <= now and not f.busy]:
            if self.calls.free == 0:
                return
            if not flight.busy and not flight.gone:
                self._step(flight)

    def _call(
        self, flights: list[_Flight], work: Callable[[], T], then: Callable[[Reply[T]], None]
    ) -> None:
        """`work` runs on the pool (HTTP and file writes only: no ledger, no decisions); `then`
        runs here with its reply. After a refused token nothing more goes out."""
        if self._refused is not None:
            return
        for flight in flights:
            flight.busy = True

        def back(reply: Reply[T]) -> None:
            for flight in flights:
                flight.busy = False
            then(reply)

        self.calls.submit(work, back)

    # ------------------------------------------------------------------ one step of a job

    def _step(self, flight: _Flight) -> None:
        if flight.phase == "create":
            self._create(flight)
        elif flight.phase == "reconcile":
            self._reconcile(flight)
        else:
            self._poll(flight)

    def _create(self, flight: _Flight) -> None:
        if self.desk.stopping:
            # Its create failed after the run stopped handing out work (it was on the wire
            # then, so _stop kept it): surely not created, so it goes as _stop's others did.
            self._let_go(flight)
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
        ref, values = flight.model.ref, flight.input
        self._call(
            [flight],
            lambda: self.api.create(ref, values),
            lambda reply: self._on_create_reply(flight, reply),
        )

    def _on_create_reply(self, flight: _Flight, reply: Reply[PredictionState]) -> None:
        # Back, so its outcome is known; a refused one was not created (_interrupt settles it
        # at zero).
        flight.creating = False
        try:
            state = reply.get()
        except CallFailed as exc:
            self._create_failed(flight, exc)
            return
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
            self._budget_reached(exc)
            return False
        flight.reservation = reservation
        return True

    def _budget_reached(self, exc: CapReached) -> None:
        if self.spill is not None and not self.manifest_ids:
            # Only a hybrid run's spill-over: its local pools take the rest, so the run goes on.
            self._stop("warning", f"spill-over budget: {exc}; the rest renders locally")
            self.spill.stop()
            return
        self.summary.stopped_at_budget = True
        self.summary.stop_reason = str(exc)
        self._stop("warning", f"budget: {exc}; stopping, the rest stays pending")
        if self.spill is not None:
            self.spill.stop()

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
            if self._elapsed(flight, now) >= self.config.retry.max_total_s:
                self._not_created(flight, f"[rate-limited] still throttled after retries: {exc}")
            return
        if exc.kind in ("fatal", "bad-output"):
            self._give_up(flight, f"[http-{exc.status}] {exc}")
            return
        self.summary.transient += 1
        flight.tries += 1
        unknown = exc.kind == "unknown-outcome"
        if self._gives_up(flight.tries, self._elapsed(flight, now), now):
            if unknown:
                flight.phase = "reconcile"  # one last look before letting go
                flight.due = now
                return
            self._not_created(flight, f"[transient] gave up after {flight.tries} tries: {exc}")
            return
        flight.phase = "reconcile" if unknown else "create"
        flight.due = now + self.backoff.delay(flight.tries)

    def _reconcile(self, flight: _Flight) -> None:
        """The last create's reply was lost: did it create a prediction?"""
        ref, values, since = flight.model.ref, flight.input, flight.sent_at - LIST_SLACK_S
        self._call(
            [flight],
            lambda: find_prediction(self.api, ref, values, since=since),
            lambda reply: self._on_reconciled(flight, reply),
        )

    def _on_reconciled(self, flight: _Flight, reply: Reply[PredictionState | None]) -> None:
        try:
            found = reply.get()
        except CallFailed as exc:
            now = self.clock()
            flight.tries += 1
            if self._gives_up(flight.tries, self._elapsed(flight, now), now):
                self.summary.unreconciled += 1
                self._park(flight, f"[unknown-outcome] could not list predictions: {exc}")
                return
            flight.due = now + self.backoff.delay(flight.tries)
            return
        if found is not None:
            self.summary.reconciled += 1
            self._created(flight, found.id)
            return
        if self.desk.stopping:
            self._let_go(flight)
            return
        now = self.clock()
        if self._gives_up(flight.tries, self._elapsed(flight, now), now):
            self._not_created(flight, f"[transient] gave up after {flight.tries} tries")
            return
        flight.phase = "create"  # nothing was created: the reservation still covers a create
        flight.due = now

    # ------------------------------------------------------------------ polling

    def _poll_together(self, now: float) -> None:
        """One page of GET /v1/predictions (newest first, 100 a page) answers for every
        prediction on it: once two or more are watched and one is due, a list replaces their
        GETs, and all of them are looked at, due or not (so they fall into one cadence)."""
        if self.calls.free == 0 or now < self._list_after:
            return
        watched = [f for f in self._flights if self._listable(f)]
        if len(watched) < 2 or all(f.due > now for f in watched):
            return
        ids = [str(f.prediction_id) for f in watched]
        since = min(f.sent_at for f in watched) - LIST_SLACK_S
        self._call(
            watched,
            lambda: listed(self.api, ids, since=since),
            lambda reply: self._on_listed(watched, now, reply),
        )

    def _listable(self, flight: _Flight) -> bool:
        # A cancel not yet sent goes with its own GET (_poll sends it first).
        unsent_cancel = flight.cancel_kind is not None and not flight.cancel_sent
        return flight.phase == "poll" and not (flight.busy or flight.poll_alone or unsent_cancel)

    def _on_listed(
        self, watched: list[_Flight], asked: float, reply: Reply[dict[str, PredictionState]]
    ) -> None:
        try:
            found = reply.get()
        except CallFailed:
            # Not a failed poll of anyone's: lists back off, and each prediction is polled by
            # its own GET meanwhile, whose failures count as ever.
            self._list_failures += 1
            self._list_after = self.clock() + self.backoff.delay(self._list_failures)
            for flight in watched:
                flight.poll_alone = True
            return
        self._list_failures = 0
        for flight in watched:
            state = found.get(str(flight.prediction_id))
            if state is None or (state.status == "succeeded" and state.output is None):
                flight.poll_alone = True  # off the page, or shown without its output
                continue
            self._observed(flight, state, asked)

    def _poll(self, flight: _Flight) -> None:
        """One GET, after the cancel it owes, if any (a cancel that failed is sent again here)."""
        now = self.clock()
        if flight.cancel_kind is None and flight.poll_failures and self._overdue(flight, now):
            self._mark_unobserved(flight)
        cancel = flight.cancel_kind is not None and not flight.cancel_sent
        prediction_id = str(flight.prediction_id)

        def cancel_then_get() -> tuple[bool, PredictionState | CallFailed]:
            sent = cancel and self._try_cancel(prediction_id)
            try:
                return sent, self.api.get(prediction_id)
            except CallFailed as exc:
                return sent, exc

        self._call([flight], cancel_then_get, lambda reply: self._on_polled(flight, now, reply))

    def _on_polled(
        self, flight: _Flight, asked: float, reply: Reply[tuple[bool, PredictionState | CallFailed]]
    ) -> None:
        sent, state = reply.get()
        if sent:
            flight.cancel_sent = True
        if isinstance(state, CallFailed):
            self._poll_failed(flight, state)
            return
        flight.poll_alone = False
        self._observed(flight, state, asked)

    def _observed(self, flight: _Flight, state: PredictionState, asked: float) -> None:
        """A poll's answer, by list or by GET, `asked` when it was sent."""
        if not state.terminal:
            flight.poll_failures, flight.failing_since = 0, None
            self._watch(flight, state, asked)
            return
        self._finish(flight, state)  # its download's failures count on, as failed polls

    def _poll_failed(self, flight: _Flight, exc: CallFailed, *, ended: bool = False) -> None:
        """Back off (jittered, capped) and count; past the retry policy's bound, or the time
        limit, stop watching the prediction for now (_abandon). The next try is never later than
        the moment the prediction may reach its covered time, so that cancel is not late.
        `ended`: the prediction is known to have finished (only its download failed)."""
        now = self.clock()
        self.summary.poll_errors += 1
        flight.poll_failures += 1
        flight.poll_alone = True  # its backoff is its own: no list looks at it before then
        if flight.failing_since is None:
            flight.failing_since = now
        if not ended and flight.cancel_kind is None and self._overdue(flight, now):
            self._mark_unobserved(flight)
            self._send_cancel(flight)
        failures = flight.poll_failures
        if self._gives_up(failures, now - flight.failing_since, now) or self._cancel_ignored(
            flight, now
        ):
            self._abandon(flight, f"[transient] {failures} failed poll(s) in a row: {exc}")
            return
        delay = self.backoff.delay(failures)
        if exc.kind == "rate-limited" and exc.hint_s is not None:
            delay = hint_jitter(exc.hint_s, self.hooks.rng)
        flight.due = min(now + max(self.config.poll_s, delay), self._cancel_point(flight))

    def _watch(self, flight: _Flight, state: PredictionState, asked: float) -> None:
        """Cancel a prediction whose predict time reaches what its reservation covers. Its start
        is taken as the last poll that still saw it queued (when that poll was sent), or, when
        the first poll already sees it running, the create (whose reply saw it queued): early,
        so the cancel is never late. An adopted prediction (created by an earlier run) counts
        from its reservation."""
        now = self.clock()
        if state.status == "processing" and flight.running_since is None:
            if flight.last_poll is not None:
                flight.running_since = flight.last_poll
            else:
                flight.running_since = flight.sent_at or asked
        flight.last_poll = asked
        flight.due = now + self.config.poll_s
        if self._cancel_ignored(flight, now):
            self._abandon(flight, "[transient] still running long after it was cancelled")
            return
        limit = flight.reservation.cancel_after_s if flight.reservation else None
        running = flight.running_since
        if limit is None or running is None or flight.cancel_kind is not None:
            return
        if now - running + self.config.poll_s >= limit:
            reason = f"cancelled: ran past the {limit:.0f} s its reservation covers"
            self._mark_cancel(flight, "over-time", reason)
            self._send_cancel(flight)

    def _overdue(self, flight: _Flight, now: float) -> bool:
        return now >= self._cancel_point(flight)

    def _cancel_point(self, flight: _Flight) -> float:
        """When the prediction may reach its covered predict time, by what is known: it cannot
        have started running before the last poll that saw it queued, nor before its create. So
        with polls failing, time since then bounds its running time from above."""
        if flight.cancel_kind is not None or flight.reservation is None:
            return math.inf
        start = flight.running_since
        if start is None:
            start = flight.last_poll if flight.last_poll is not None else flight.sent_at
        return start + flight.reservation.cancel_after_s - self.config.poll_s

    def _mark_unobserved(self, flight: _Flight) -> None:
        limit = flight.reservation.cancel_after_s if flight.reservation else 0.0
        reason = f"cancelled unobserved: polls failed as it neared the {limit:.0f} s it covers"
        self._mark_cancel(flight, "unobserved", reason)

    def _cancel_ignored(self, flight: _Flight, now: float) -> bool:
        return flight.cancel_at is not None and now - flight.cancel_at > self.cancel_wait_s

    def _mark_cancel(self, flight: _Flight, kind: CancelKind, reason: str) -> None:
        """The prediction is to be cancelled; sent by _send_cancel, or by the next _poll."""
        flight.cancel_kind, flight.cancel_reason = kind, reason
        flight.cancel_at = self.clock()
        if kind != "abandoned":
            self.summary.cancelled += 1

    def _send_cancel(self, flight: _Flight, then: Callable[[], None] | None = None) -> None:
        """Best effort: a cancel that fails is sent again at the next poll. Sent from a reply's
        handler, so on the connection that reply just freed."""
        prediction_id = str(flight.prediction_id)

        def sent(reply: Reply[bool]) -> None:
            if reply.get():
                flight.cancel_sent = True
            if then is not None:
                then()

        self._call([flight], lambda: self._try_cancel(prediction_id), sent)

    def _try_cancel(self, prediction_id: str) -> bool:
        """On the pool: whether the cancel got through (a refused token still raises)."""
        try:
            self.api.cancel(prediction_id)
        except CallFailed:
            return False
        return True

    def _abandon(self, flight: _Flight, error: str) -> None:
        """Polls keep failing: stop watching this prediction for now. It is cancelled (best
        effort), since nobody would stop it at its covered time; its reservation stays open;
        the job is set aside uncharged. Claimed again in this run, the job polls the same
        prediction (and adopts its output if it finished); if this run ends first, the next
        run's reconcile settles the reservation by prediction id and adopts a finished output."""
        self.summary.abandoned += 1
        if flight.cancel_kind is None:
            self._mark_cancel(flight, "abandoned", "cancelled: it could not be polled")
            # Parked once the cancel is back: whether it got through decides whether the job,
            # claimed again, sends it again (_Resume.of).
            self._send_cancel(flight, then=lambda: self._park(flight, error))
            return
        self._park(flight, error)

    def _park(self, flight: _Flight, error: str) -> None:
        """Set aside with the reservation open (its outcome is unknown) and remembered."""
        self._resume[flight.lease.key] = _Resume.of(flight)
        flight.reservation_id = None  # left open on purpose: not this flight's to settle
        self._drop(flight)
        self._set_aside(flight.lease, error)

    # ------------------------------------------------------------------ finished predictions

    def _finish(self, flight: _Flight, state: PredictionState) -> None:
        succeeded = state.status == "succeeded"
        usd = self._cost(flight, state, succeeded)
        if not succeeded:
            self._settle(flight, usd, state.predict_s, state.status)
            self._drop(flight)
            self._ended(flight, state)
            return
        tmp = self.workspace.tmp_path(flight.lease.key, flight.lease.token)
        key, output = flight.lease.key, state.output
        self._call(
            [flight],
            lambda: self._download(output, tmp, key),
            lambda reply: self._on_downloaded(flight, state, usd, tmp, reply),
        )

    def _download(self, output: Any, tmp: Path, key: str) -> tuple[str, float]:
        """On the pool: fetch the output at once (Replicate deletes outputs after about an hour)
        and write it as the chunk's temp file. Its publish is the coordinator's."""
        result = self.api.fetch(output)
        sha256 = audio.write_chunk(tmp, result, key=key)
        if self._stopped_now.is_set():
            remove_quietly(tmp)  # the run was stopped meanwhile: nobody will publish it
        return sha256, result.duration_s

    def _on_downloaded(
        self,
        flight: _Flight,
        state: PredictionState,
        usd: float,
        tmp: Path,
        reply: Reply[tuple[str, float]],
    ) -> None:
        try:
            sha256, duration_s = reply.get()
        except CallFailed as exc:
            if exc.kind == "transient":
                # The download failed, not the prediction: its output is fetched again after
                # the next poll, within the same bound as failing polls.
                self._poll_failed(flight, exc, ended=True)
                return
            self._bad_output(flight, usd, state, f"[output] {exc}", retryable=True)
            return
        except EngineError as exc:
            self._bad_output(flight, usd, state, f"[output] {exc}", retryable=exc.retryable)
            return
        # Settled after its job is published (see _publish), never before: killed in between,
        # the reservation stays open with its prediction id, and the next run's reconcile
        # settles it at its cost instead of paying for the job again.
        if flight.reservation_id is not None:
            self._unsettled[flight.lease.token] = (flight.reservation_id, usd, state.predict_s)
            flight.reservation_id = None
        self._drop(flight)
        self._queue_publication(flight, state, tmp, sha256, duration_s, usd)

    def _ended(self, flight: _Flight, state: PredictionState) -> None:
        """A prediction that did not succeed (its reservation already settled)."""
        lease = flight.lease
        if state.status == "failed":
            self._fail(lease, f"[model-error] {state.error or 'no message'}", False)
        elif flight.cancel_kind == "over-time":
            self._fail(lease, f"[over-time] {flight.cancel_reason}", False)
        elif flight.cancel_kind is not None:
            # Cancelled by us on no evidence against the job (polls were failing).
            self._set_aside(lease, f"[transient] {flight.cancel_reason}")
        else:
            self._fail(lease, f"[{state.status}] the prediction was {state.status}", True)

    def _bad_output(
        self, flight: _Flight, usd: float, state: PredictionState, error: str, *, retryable: bool
    ) -> None:
        self._settle(flight, usd, state.predict_s, "undecodable")
        self._drop(flight)
        self._fail(flight.lease, error, retryable)

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
        self.job_times.record(WORKER, max(0.0, self.clock() - flight.sent_at))
        data = {"duration_ms": publication.duration_ms, "render_ms": publication.render_ms}
        self._finished.append((publication, data | {"cost_usd": usd}))

    # ------------------------------------------------------------------ retry bounds

    def _elapsed(self, flight: _Flight, now: float) -> float:
        return now - (flight.first_try if flight.first_try is not None else now)

    def _gives_up(self, tries: int, elapsed_s: float, now: float) -> bool:
        """The retry policy's bound; past the time limit nothing is waited for any more."""
        return self.backoff.gives_up(tries, elapsed_s) or self.desk.past_deadline(now)

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

    def _give_up(self, flight: _Flight, error: str) -> None:
        """A permanent cause and no prediction: the reservation closes at zero, the job fails."""
        self._settle(flight, 0.0, None, "not-created")
        self._drop(flight)
        self._fail(flight.lease, error, False)

    def _not_created(self, flight: _Flight, error: str) -> None:
        """A transient cause and surely no prediction: the reservation closes at zero, the job
        is set aside uncharged."""
        self._settle(flight, 0.0, None, "not-created")
        self._drop(flight)
        self._set_aside(flight.lease, error)

    def _fail(self, lease: Lease, error: str, retryable: bool) -> None:
        self.desk.fail(lease, error, retryable=retryable, worker=WORKER)

    def _set_aside(self, lease: Lease, error: str) -> None:
        self.desk.set_aside(lease, error, worker=WORKER)

    def _drop(self, flight: _Flight) -> None:
        flight.gone = True
        if flight in self._flights:
            self._flights.remove(flight)

    def _publish(self) -> None:
        if not self._finished:
            return
        batch, self._finished = self._finished, []
        self.desk.publish(batch)
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
        self.desk.renew([f.lease.token for f in self._flights])

    def _note(self, kind: str, message: str) -> None:
        if kind == "unreconciled":
            self.summary.unreconciled += 1
        elif kind == "reconciled":
            self.summary.reconciled += 1
        self.observer(RunEvent("warning" if kind == "unreconciled" else "reconcile", message))

    # ------------------------------------------------------------------ stopping now

    def _interrupt(self) -> None:
        """Ctrl-C, SIGTERM, a refused token or an error: cancel what runs, keep what finished,
        give leases back uncharged. A cancelled prediction's reservation stays open: the next
        run settles it at its real cost. A reservation whose create was on the wire stays open
        too, to be reconciled."""
        self._stopped_now.set()
        try:
            self._publish()
            running = [str(f.prediction_id) for f in self._flights if f.prediction_id is not None]
            cancels = [functools.partial(self.api.cancel, pid) for pid in running]
            # Side by side, as the run's own calls went: 64 in flight one by one would hold a
            # Ctrl-C for 64 round trips.
            run_together(cancels, self.config.rate_limit.connections, self.config.timeout_s)
            for flight in list(self._flights):
                if not flight.creating and flight.phase == "create":  # surely not created
                    self._settle(flight, 0.0, None, "not-created")
                self.desk.release(flight.lease, "interrupted")
            self._flights.clear()
            # Leases a signal caught before they became flights (see Ledger.release_run).
            self.desk.release_run("interrupted")
        except Exception:
            pass  # the ledger or the API is unreachable; the next run reconciles


def _smallest(*caps: float | None) -> float | None:
    present = [cap for cap in caps if cap is not None]
    return min(present) if present else None
