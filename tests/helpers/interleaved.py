"""The remote executor's calls in one process, interleaved by a seed: for property tests of what
it does with many calls on the wire (budget, reservations), fast and the same on every run.

- `InterleavedCalls` stands in for the thread pool (`RemoteHooks.calls`): every call takes a
  seeded random time on the virtual clock, so replies come back in any order, some while the
  executor sends more, some only after its clock has moved on. A call runs when its time
  comes, in this thread: what it sees of the API is the API at that moment.
- `StandInReplicate` stands in for the API (`RemoteHooks.api`): predictions that queue, run,
  succeed, fail, get stuck until cancelled, and seeded faults on every kind of call (throttled,
  5xx, replies lost after the create happened, timeouts before it did, refused inputs). Before
  each create it calls `on_create(job input)`, where a test checks the ledger.

Why not threads and the fake HTTP server: the orders that matter (a create's reply behind a
poll's, a cancel landing after the next list) would come by chance and differ run to run.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from helpers.fake_replicate import VirtualClock
from songbatch.engines.base import RenderResult
from songbatch.remote.calls import HandOver, Reply, run_call
from songbatch.remote.client import CallFailed, PredictionState

T = TypeVar("T")


@dataclass
class _Pending:
    due: float
    order: int
    work: Callable[[], Any]
    then: Callable[[Reply[Any]], None]


class InterleavedCalls:
    def __init__(
        self,
        size: int,
        clock: VirtualClock,
        rng: random.Random,
        *,
        latency_s: float = 0.4,
        on_step: Callable[[], None] = lambda: None,
    ) -> None:
        self.size = size
        self.clock = clock
        self.rng = rng
        self.latency_s = latency_s
        self.on_step = on_step  # before each reply: the test checks its invariant there
        self._pending: list[_Pending] = []
        self._order = itertools.count()
        self.most_at_once = 0

    @property
    def free(self) -> int:
        return max(0, self.size - len(self._pending))

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def submit(self, work: Callable[[], T], then: Callable[[Reply[T]], None]) -> None:
        due = self.clock() + self.rng.uniform(0.0, self.latency_s)
        self._pending.append(_Pending(due, next(self._order), work, then))
        self.most_at_once = max(self.most_at_once, len(self._pending))

    def replies(self, until: float | None) -> list[HandOver]:
        self.on_step()
        first = min(self._pending, key=lambda p: (p.due, p.order))
        if until is not None and first.due > until:
            self.clock.sleep(until - self.clock())  # the executor's wake comes first
            return []
        self.clock.sleep(first.due - self.clock())
        ready = [p for p in self._pending if p.due <= first.due]
        self.rng.shuffle(ready)  # replies due together come back in any order
        for pending in ready:
            self._pending.remove(pending)
        return [functools.partial(p.then, run_call(p.work)) for p in ready]

    def waitable(self) -> int:
        raise NotImplementedError("virtual calls run alone: they cannot share the scheduler")

    def close(self) -> None:
        self._pending.clear()


CREATE_FAULTS = ("429", "500", "lost", "timeout", "422")


@dataclass
class Made:
    """A prediction as the stand-in keeps it."""

    id: str
    input: dict[str, Any]
    created: float
    starting_s: float
    run_s: float  # how long it runs if nobody cancels it (stuck: very long)
    outcome: str  # succeeded | failed | aborted
    canceled_at: float | None = None

    @property
    def started(self) -> float:
        return self.created + self.starting_s

    def billed_s(self, now: float) -> float:
        """Predict seconds so far: running time until it ended, was cancelled, or now."""
        end = min(now, self.started + self.run_s)
        if self.canceled_at is not None:
            end = min(end, self.canceled_at)
        return max(0.0, end - self.started)


@dataclass
class StandInReplicate:
    clock: VirtualClock
    rng: random.Random
    model: str = "o/m"
    fault_rate: float = 0.1  # per call
    expected_s: float = 2.0  # a prediction runs 0.2-3x this, or is stuck
    stuck_rate: float = 0.05
    cancels_fail: bool = False  # off: a cancel lands when sent
    on_create: Callable[[dict[str, Any]], None] = lambda model_input: None
    made: dict[str, Made] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def create(self, ref: str, model_input: dict[str, Any]) -> PredictionState:
        self.on_create(model_input)
        fault = self._fault(CREATE_FAULTS)
        if fault == "429":
            hint = float(self.rng.randint(1, 5))
            raise CallFailed("rate-limited", "HTTP 429: throttled", status=429, hint_s=hint)
        if fault == "500":
            raise CallFailed("transient", "HTTP 500: internal", status=500, hint_s=None)
        if fault == "timeout":  # sent, never reached the model: nothing was created
            raise CallFailed("unknown-outcome", "ReadTimeout", hint_s=None)
        if fault == "422":
            raise CallFailed("fatal", "HTTP 422: refused input", status=422, hint_s=None)
        made = self._make(model_input)
        if fault == "lost":  # created, and the reply lost
            raise CallFailed("unknown-outcome", "RemoteProtocolError", hint_s=None)
        return self._state(made)

    def get(self, prediction_id: str) -> PredictionState:
        self._maybe_fail()
        return self._state(self.made[prediction_id])

    def cancel(self, prediction_id: str) -> None:
        if self.cancels_fail:
            self._maybe_fail()
        made = self.made[prediction_id]
        now = self.clock()
        if made.canceled_at is None and now < made.started + made.run_s:
            made.canceled_at = now

    def recent(self, max_pages: int = 5) -> Iterator[PredictionState]:
        newest = sorted(self.made.values(), key=lambda m: m.created, reverse=True)
        for page in range(max_pages):
            self._maybe_fail()
            chunk = newest[page * 100 : (page + 1) * 100]
            if not chunk:
                return
            yield from (self._state(made) for made in chunk)

    def upload(self, path: Path) -> tuple[str, str | None]:
        raise AssertionError("no voices here")

    def fetch(self, output: Any) -> RenderResult:
        self._maybe_fail()
        return RenderResult(audio=np.full(1600, 0.1, dtype=np.float32), sample_rate=16000)

    def close(self) -> None:
        pass

    def status(self, made: Made) -> str:
        now = self.clock()
        if made.canceled_at is not None and now >= made.canceled_at:
            return "canceled"
        if now < made.started:
            return "starting"
        if now < made.started + made.run_s:
            return "processing"
        return made.outcome

    def _make(self, model_input: dict[str, Any]) -> Made:
        stuck = self.rng.random() < self.stuck_rate
        run_s = 1e6 if stuck else self.expected_s * self.rng.uniform(0.2, 3.0)
        outcome = self.rng.choices(["succeeded", "failed", "aborted"], [0.9, 0.05, 0.05])[0]
        made = Made(
            id=f"p{next(self.ids)}",
            input=dict(model_input),
            created=self.clock(),
            starting_s=self.rng.choice([0.0, 0.0, self.rng.uniform(0, 2)]),
            run_s=run_s,
            outcome=outcome,
        )
        self.made[made.id] = made
        return made

    def _state(self, made: Made) -> PredictionState:
        status = self.status(made)
        ended = status in ("succeeded", "failed", "aborted", "canceled")
        return PredictionState(
            id=made.id,
            status=status,
            model=self.model,
            version=None,
            input=dict(made.input),
            output=f"stand-in://{made.id}" if status == "succeeded" else None,
            error="model error" if status == "failed" else None,
            predict_s=made.billed_s(self.clock()) if ended else None,
            created_at=made.created,
        )

    def _fault(self, kinds: tuple[str, ...]) -> str | None:
        return self.rng.choice(kinds) if self.rng.random() < self.fault_rate else None

    def _maybe_fail(self) -> None:
        if self.rng.random() < self.fault_rate / 2:
            raise CallFailed("transient", "HTTP 503: unavailable", status=503, hint_s=None)
