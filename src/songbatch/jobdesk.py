"""The coordinator's policy over the ledger: one code for every backend.

A backend runs jobs: worker processes, Ray actors, Replicate predictions. What a job's lease
means is decided here, the same for each of them:

- what a claim takes (a backend's own manifests, the jobs routed to it, the kinds it can run)
  and when a backend claims again (`ClaimSource.drained`: a claim came back short, until a job
  goes back to pending);
- what a failure is charged, and what a hybrid pool's spill policy does with it;
- a transient fault's set-aside, uncharged, and when the earliest one comes due again;
- heartbeats, the fenced publish, leases given back;
- the deadline: whether a job started now still ends in time, and the stop when none can.

Each with its event and its count in the backend's summary. A backend holds one desk over its
manifests and keeps only what is its own: how its jobs run, and the state of those running.
Why a desk per backend rather than one object for the run: everything it keeps (the sources'
drained flags, the set-aside due time, the stop, the summary) is per backend, and the scheduler
already gives the run one thread and one ledger writer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from songbatch.crashpoints import crash_point, pause_point
from songbatch.events import Observer, RunEvent
from songbatch.executors.publishing import ExecutorSummary, publish_and_report
from songbatch.ledger import JobState, Lease, Ledger, Publication, Route
from songbatch.ratelimit import TransientPolicy
from songbatch.window import room

if TYPE_CHECKING:
    from songbatch.spill import SpillPolicy


@dataclass
class ClaimSource:
    """Jobs a backend claims from one side: its manifests' own, or those routed to it."""

    manifest_ids: list[int]
    route: Route | None = None
    kinds: list[str] | None = None  # None: any; []: none (every engine went across)
    # A claim came back short: claim again only once a job has gone back to pending.
    drained: bool = False


class DeskRules(Protocol):
    """A backend's settings the policy reads (ExecutorSettings, RemoteSettings)."""

    lease_s: float
    max_failures: int
    deadline: float | None  # on the backend's clock: no job is started to end past it
    transient_patience_s: float


@dataclass
class JobDesk:
    ledger: Ledger
    run_id: int
    rules: DeskRules
    summary: ExecutorSummary
    observer: Observer
    on_published: Callable[[str], None]
    transient: TransientPolicy
    spill: SpillPolicy | None = None  # a hybrid pool's: a failure may send its job across
    sources: list[ClaimSource] = field(default_factory=list)
    stopping: bool = False  # no new job is started: the deadline, a cap, a stop
    _set_aside_due: float | None = None
    _set_aside_changed: bool = True  # look in the ledger before trusting `_set_aside_due`

    @classmethod
    def over(
        cls,
        ledger: Ledger,
        run_id: int,
        rules: DeskRules,
        summary: ExecutorSummary,
        observer: Observer,
        on_published: Callable[[str], None],
        *,
        rng: random.Random | None = None,
        spill: SpillPolicy | None = None,
    ) -> JobDesk:
        transient = TransientPolicy(
            patience_s=rules.transient_patience_s, rng=rng or random.Random()
        )
        return cls(ledger, run_id, rules, summary, observer, on_published, transient, spill)

    # ------------------------------------------------------------------ claims

    def source(
        self,
        manifest_ids: Sequence[int],
        route: Route | None = None,
        kinds: list[str] | None = None,
    ) -> ClaimSource:
        added = ClaimSource(list(manifest_ids), route, kinds)
        self.sources.append(added)
        return added

    def claim(self, source: ClaimSource, limit: int, *, worker: str, device: str) -> list[Lease]:
        """Up to `limit` leases in the ledger's claim order (whole files first)."""
        if source.kinds == []:
            source.drained = True
            return []
        leases = self.ledger.claim(
            limit=limit,
            worker=worker,
            device=device,
            lease_s=self.rules.lease_s,
            run_id=self.run_id,
            manifest_ids=source.manifest_ids,
            kinds=source.kinds,
            route=source.route,
        )
        crash_point("after-claim")
        pause_point("claimed")
        source.drained = len(leases) < limit
        return leases

    @property
    def drained(self) -> bool:
        """No source has anything to claim until a job goes back to pending."""
        return all(source.drained for source in self.sources)

    def undrain(self) -> None:
        """A job went back to pending: the next claim looks again, on every side. It may be
        one set aside by another backend (a spill-over's, routed back), so the set-aside due
        time is looked up again too."""
        self._set_aside_changed = True
        for source in self.sources:
            source.drained = False

    def _manifest_ids(self) -> list[int]:
        return sorted({i for source in self.sources for i in source.manifest_ids})

    # ------------------------------------------------------------------ failures

    def fail(
        self,
        lease: Lease,
        error: str,
        *,
        retryable: bool,
        worker: str,
        device: str | None = None,
        outcome: str = "failed",
    ) -> JobState | None:
        """A failure charged to the job; what became of it (None: its lease was stale)."""
        state = self.ledger.fail(
            lease,
            error,
            retryable=retryable,
            max_failures=self.rules.max_failures,
            outcome=outcome,
            worker=worker,
            device=device,
        )
        if self.spill is not None and state is not None:
            failures = self.ledger.failures(lease.key)
            if self.spill.after_failure(lease.key, failures, for_good=state == JobState.FAILED):
                state = JobState.PENDING  # it goes on, on the spill-over backend
        if state == JobState.FAILED:
            self.summary.failed += 1
        elif state == JobState.PENDING:
            self.summary.retried += 1
            self.undrain()
        self.observer(
            RunEvent("job-failed", error, worker=worker, job=lease.key, data={"state": state})
        )
        return state

    def set_aside(
        self, lease: Lease, error: str, *, worker: str, device: str | None = None
    ) -> bool:
        """Not the job's fault: back to pending uncharged, after a growing delay, or for the
        next run once this run's patience with it is spent. False: its lease was stale."""
        delay = self.transient.delay(self.ledger.deferrals(lease.key) + 1)
        if self.ledger.defer(lease, error, delay_s=delay, worker=worker, device=device) is None:
            return False
        self.summary.set_aside += 1
        self._set_aside_changed = True
        state = "pending" if delay is not None else "left for the next run"
        self.observer(
            RunEvent(
                "job-set-aside",
                error,
                worker=worker,
                job=lease.key,
                data={"state": state, "delay_s": delay},
            )
        )
        return True

    def set_aside_due(self) -> float | None:
        """When the earliest job set aside in this run may be claimed again (the ledger's
        clock, epoch seconds); None when none waits."""
        if self._set_aside_changed:
            self._set_aside_changed = False
            self._set_aside_due = self.ledger.next_deferred(self._manifest_ids())
        return self._set_aside_due

    def wake_set_aside(self) -> None:
        """Jobs set aside have come due: claim again, and look for the next due once they are."""
        due = self._set_aside_due
        if due is not None and self.ledger.clock() >= due:
            self._set_aside_due = None
            self._set_aside_changed = True
            self.undrain()

    # ------------------------------------------------------------------ leases

    def renew(self, tokens: Sequence[int]) -> None:
        self.ledger.heartbeat(list(tokens), self.rules.lease_s)

    def release(self, lease: Lease, outcome: str) -> None:
        """Back to pending, uncharged, for a later run (`outcome`: what the attempt was)."""
        self.ledger.release(lease, outcome)

    def requeue(self, lease: Lease) -> None:
        """Back to pending, uncharged, to be claimed again in this run."""
        self.ledger.release(lease, "requeued")
        self.undrain()

    def release_run(self, outcome: str) -> None:
        """Leases only the ledger knows of (a signal between a claim and its hand-out)."""
        self.ledger.release_run(self.run_id, outcome)

    def publish(self, batch: Sequence[tuple[Publication, dict[str, Any]]]) -> None:
        """Finished files in one transaction, each fenced by its lease."""
        publish_and_report(self.ledger, batch, self.summary, self.observer, self.on_published)

    # ------------------------------------------------------------------ the deadline

    def room(self, now: float, *, ahead: int, per_job_s: float | None) -> int | None:
        """Jobs a lane with `ahead` queued can still start and finish before the deadline;
        None: no deadline, or nothing measured yet."""
        return room(now, self.rules.deadline, ahead=ahead, per_job_s=per_job_s)

    def past_deadline(self, now: float) -> bool:
        deadline = self.rules.deadline
        return deadline is not None and now >= deadline

    def stop(self, kind: str, message: str, *, at_deadline: bool = False) -> None:
        """No new job is started from now on; what runs finishes."""
        self.stopping = True
        if at_deadline:
            self.summary.stopped_at_deadline = True
        self.observer(RunEvent(kind, message))
