"""What a run reports as it goes. The library never prints: it hands these to an observer, and the
CLI decides how they look (rich progress on a terminal, timestamped lines elsewhere)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunEvent:
    kind: str  # planned, worker-ready, worker-died, job-started, job-done, job-failed, ...
    message: str = ""
    worker: str | None = None
    job: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


Observer = Callable[[RunEvent], None]


def ignore(event: RunEvent) -> None:
    """The default observer."""
