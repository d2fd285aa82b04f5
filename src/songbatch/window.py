"""When to stop handing out work so that a time window (`--time-limit`, `--until`) ends on time.

Pure arithmetic on a clock the caller passes in, so it is tested without waiting. A lane is
whatever renders one job after another: a local device (its worker renders its queue in order)
or one remote flight (each prediction runs on its own). Work handed to a lane finishes after the
jobs already ahead of it there; with the measured seconds per job of this run, a job fits when
`now + (ahead + 1) x per job < deadline`. Before anything is measured only the deadline itself
stops the run: a guess would either idle the devices or overrun the window.
"""

from __future__ import annotations

from collections import deque

SAMPLES = 32  # recent jobs a lane's rate looks back over: follows a change, smooths the noise


class JobTimes:
    """Measured seconds per job, per lane and for the whole run."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self._samples = samples
        self._lanes: dict[str, deque[float]] = {}
        self._all: deque[float] = deque(maxlen=samples)

    def record(self, lane: str, seconds: float) -> None:
        self._lanes.setdefault(lane, deque(maxlen=self._samples)).append(seconds)
        self._all.append(seconds)

    def per_job(self, lane: str | None = None) -> float | None:
        """The lane's recent mean, else the run's (a new device is like the others), else None."""
        times = self._lanes.get(lane or "") or self._all
        return sum(times) / len(times) if times else None


def room(now: float, deadline: float | None, *, ahead: int, per_job_s: float | None) -> int | None:
    """How many more jobs a lane with `ahead` jobs queued can take and still finish before the
    deadline; None when there is no limit to it (no deadline, or nothing measured yet)."""
    if deadline is None:
        return None
    if now >= deadline:
        return 0
    if per_job_s is None:
        return None
    if per_job_s <= 0:
        return None
    # Strictly before the deadline: a job expected to end exactly on it is not handed out.
    fitting = (deadline - now) / per_job_s
    whole = int(fitting)
    if whole == fitting:
        whole -= 1
    return max(0, whole - ahead)
