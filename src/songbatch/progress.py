"""How fast a run goes and when it will end, from what it has measured so far. Pure arithmetic
on timestamps the caller passes in (a monotonic clock), so it is tested without waiting; the CLI
only displays it.

Rates come from a window of recent completions, measured from the completion just before the
window to now: the engines' load time before the first completion never counts, a stall shows
as a falling rate (and a growing ETA) without waiting for the next completion, and a batch that
finishes many jobs at one moment counts once, not as a burst of zero-second jobs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW = 64  # completions a rate looks back over: long enough to smooth, short enough to follow


class Throughput:
    """Completions per second over the last `window` completions."""

    def __init__(self, window: int = WINDOW) -> None:
        # One more than the window: the oldest is the mark the window is measured from.
        self._times: deque[float] = deque(maxlen=window + 1)

    def record(self, now: float, count: int = 1) -> None:
        for _ in range(count):
            self._times.append(now)

    def per_second(self, now: float) -> float | None:
        """None until two distinct moments have been seen (one completion is no rate yet)."""
        if not self._times:
            return None
        mark = self._times[0]
        counted = sum(1 for t in self._times if t > mark)
        elapsed = now - mark
        if counted == 0 or elapsed <= 0:
            return None
        return counted / elapsed


@dataclass
class DeviceMeter:
    """One device (a worker): what it renders now, how much it finished, how fast."""

    rendering: list[str] = field(default_factory=list)  # job keys in flight, oldest first
    done: int = 0
    failed: int = 0
    audio_ms: int = 0
    render_ms: int = 0
    throughput: Throughput = field(default_factory=Throughput)

    def realtime_factor(self) -> float | None:
        """Seconds of audio per second of engine time (how many times faster than real time)."""
        return self.audio_ms / self.render_ms if self.render_ms > 0 else None


class RunMeter:
    """A run's jobs: how many are left, how fast they finish overall and per device, the ETA."""

    def __init__(self, total: int = 0) -> None:
        self.total = total
        self.finished = 0  # done or failed: either way no longer waiting for a device
        self.throughput = Throughput()
        self.devices: dict[str, DeviceMeter] = {}
        self._last: float | None = None  # when the latest job finished

    def device(self, name: str) -> DeviceMeter:
        return self.devices.setdefault(name, DeviceMeter())

    def started(self, name: str, job: str) -> None:
        self.device(name).rendering.append(job)

    def done(self, name: str, job: str, now: float, *, audio_ms: int, render_ms: int) -> None:
        meter = self._finish(name, job, now)
        meter.done += 1
        meter.audio_ms += audio_ms
        meter.render_ms += render_ms

    def failed(self, name: str, job: str, now: float) -> None:
        self._finish(name, job, now).failed += 1

    def returned(self, name: str, job: str) -> None:
        """A job went back to pending (set aside, discarded): no longer on that device."""
        self._drop(self.device(name), job)

    def lost(self, name: str) -> None:
        """The device's worker died: whatever it rendered goes back to the queue."""
        self.device(name).rendering.clear()

    def remaining(self) -> int:
        return max(0, self.total - self.finished)

    def per_second(self, now: float) -> float | None:
        """Jobs finished per second by every device together; once none is left, the rate the
        run ended at (it does not decay while the files are assembled)."""
        if self.remaining() == 0 and self._last is not None:
            now = self._last
        return self.throughput.per_second(now)

    def eta_s(self, now: float) -> float | None:
        """Seconds until the last job finishes at the measured rate; None before there is one."""
        if self.remaining() == 0:
            return 0.0
        rate = self.per_second(now)
        return None if rate is None else self.remaining() / rate

    def _finish(self, name: str, job: str, now: float) -> DeviceMeter:
        meter = self.device(name)
        self._drop(meter, job)
        meter.throughput.record(now)
        self.throughput.record(now)
        self.finished += 1
        self._last = now
        return meter

    @staticmethod
    def _drop(meter: DeviceMeter, job: str) -> None:
        if job in meter.rendering:
            meter.rendering.remove(job)
