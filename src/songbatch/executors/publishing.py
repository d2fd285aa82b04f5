"""The executors' common last step: publish what finished in one ledger transaction, then report
each job (done, or discarded because its lease went stale)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from songbatch.crashpoints import crash_point
from songbatch.events import Observer, RunEvent
from songbatch.ledger import Ledger, Publication


@dataclass
class ExecutorSummary:
    published: int = 0
    failed: int = 0
    retried: int = 0
    set_aside: int = 0  # transient faults: back to pending uncharged
    discarded: int = 0
    deaths: int = 0
    stopped_at_deadline: bool = False
    stopped_at_budget: bool = False
    stop_reason: str | None = None  # why a stop ended the run early, for the person


def publish_and_report(
    ledger: Ledger,
    batch: Sequence[tuple[Publication, dict[str, Any]]],
    summary: ExecutorSummary,
    observer: Observer,
    on_published: Callable[[str], None],
) -> None:
    """`batch` pairs each publication with the data its job-done event carries."""
    if not batch:
        return
    outcomes = ledger.publish_many([publication for publication, _ in batch])
    crash_point("after-done")
    for (publication, data), ok in zip(batch, outcomes, strict=True):
        key, worker = publication.lease.key, publication.worker
        if not ok:
            summary.discarded += 1
            observer(RunEvent("job-discarded", worker=worker, job=key))
            continue
        summary.published += 1
        observer(RunEvent("job-done", worker=worker, job=key, data=data))
        on_published(key)
