"""The coordinator's policy (jobdesk.py) on a real ledger: the rules every backend shares.

The backends' own tests (local pool, Ray, Replicate, hybrid) run through it end to end; these
pin the rules where a backend used to differ from the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from songbatch.events import RunEvent
from songbatch.executors.local import ExecutorSettings
from songbatch.executors.publishing import ExecutorSummary
from songbatch.jobdesk import JobDesk
from songbatch.ledger import JobState, Ledger
from test_ledger import FakeClock, make_plan


def _desk(ledger: Ledger, events: list[RunEvent], **settings: Any) -> JobDesk:
    run_id = ledger.start_run(["test"])
    rules = ExecutorSettings(**settings)
    return JobDesk.over(ledger, run_id, rules, ExecutorSummary(), events.append, lambda key: None)


def test_a_short_claim_drains_its_source_until_a_job_goes_back(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        record, jobs, rows = make_plan(3)
        ledger.apply_plan(record, jobs, rows)
        desk = _desk(ledger, [])
        own = desk.source([1])
        leases = desk.claim(own, 5, worker="w", device="cpu")
        assert len(leases) == 3 and desk.drained
        desk.requeue(leases[0])
        assert not desk.drained
        assert [lease.key for lease in desk.claim(own, 5, worker="w", device="cpu")] == [
            leases[0].key
        ]


def test_a_source_with_no_kinds_left_claims_nothing(tmp_path: Path) -> None:
    """A hybrid pool whose every engine went to the spill-over."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.apply_plan(*make_plan(3))
        desk = _desk(ledger, [])
        assert desk.claim(desk.source([1], kinds=[]), 5, worker="w", device="cpu") == []
        assert desk.drained


def test_a_failure_is_charged_counted_and_claimed_again(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.apply_plan(*make_plan(1))
        events: list[RunEvent] = []
        desk = _desk(ledger, events, max_failures=2)
        own = desk.source([1])
        [lease] = desk.claim(own, 5, worker="w", device="cpu")
        assert desk.fail(lease, "boom", retryable=True, worker="w") == JobState.PENDING
        assert not own.drained and desk.summary.retried == 1
        [again] = desk.claim(own, 5, worker="w", device="cpu")
        assert desk.fail(again, "boom", retryable=True, worker="w") == JobState.FAILED
        assert desk.summary.failed == 1
        assert [e.data["state"] for e in events if e.kind == "job-failed"] == [
            JobState.PENDING,
            JobState.FAILED,
        ]


def test_a_stale_lease_set_aside_is_not_counted(tmp_path: Path) -> None:
    """The local pool used to count a set-aside the ledger refused (the Replicate backend did
    not): a lease that went stale (its run was superseded, it expired) changes nothing."""
    clock = FakeClock()
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        ledger.apply_plan(*make_plan(1))
        events: list[RunEvent] = []
        desk = _desk(ledger, events)
        [lease] = desk.claim(desk.source([1]), 1, worker="w", device="cpu")
        desk.release(lease, "stopped")
        assert desk.set_aside(lease, "network down", worker="w") is False
        assert desk.summary.set_aside == 0
        assert not [e for e in events if e.kind == "job-set-aside"]


def test_a_job_set_aside_comes_due_on_the_ledgers_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        ledger.apply_plan(*make_plan(1))
        desk = _desk(ledger, [])
        own = desk.source([1])
        [lease] = desk.claim(own, 5, worker="w", device="cpu")
        assert desk.set_aside(lease, "network down", worker="w")
        assert desk.claim(own, 5, worker="w", device="cpu") == [] and desk.drained
        due = desk.set_aside_due()
        assert due is not None and due > clock.now
        desk.wake_set_aside()
        assert desk.drained  # not yet
        clock.now = due + 0.01
        desk.wake_set_aside()
        assert not desk.drained
        assert len(desk.claim(own, 5, worker="w", device="cpu")) == 1
        assert desk.set_aside_due() is None


def test_the_deadline_room_and_stop(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        events: list[RunEvent] = []
        desk = _desk(ledger, events, deadline=100.0)
        assert desk.room(90.0, ahead=0, per_job_s=None) is None  # nothing measured yet
        assert desk.room(90.0, ahead=1, per_job_s=4.0) == 1
        assert not desk.past_deadline(99.9) and desk.past_deadline(100.0)
        desk.stop("deadline", "time limit reached", at_deadline=True)
        assert desk.stopping and desk.summary.stopped_at_deadline
        assert [e.kind for e in events] == ["deadline"]


def test_a_job_set_aside_by_another_backend_is_waited_for_once_it_comes_back(
    tmp_path: Path,
) -> None:
    """A spill-over's set-aside, routed back when it stopped at a cap: the pool's desk did not
    set it aside itself, and must still wait for it rather than end the run without it."""
    clock = FakeClock()
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        ledger.apply_plan(*make_plan(1))
        desk = _desk(ledger, [])
        desk.source([1])
        assert desk.set_aside_due() is None
        [lease] = ledger.claim(limit=1, worker="api", device="api", lease_s=60)
        ledger.defer(lease, "network down", delay_s=30.0)  # the other backend's own desk
        desk.undrain()  # the job came back to this backend's side
        due = desk.set_aside_due()
        assert due is not None and abs(due - (clock.now + 30.0)) < 1
