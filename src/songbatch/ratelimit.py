"""Pacing for calls to a rate-limited API: a token bucket inside a sliding-window cap, the
server's own "retry later" hints, and capped, jittered exponential backoff.

Everything takes an injected clock, so tests and benchmarks run hours of traffic in virtual time.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]

WINDOW_S = 60.0
# Each send stays in the window this much longer than the server's 60 s. The server counts
# creates as they arrive, and two sent exactly 60 s apart can arrive less than 60 s apart (the
# first held up on the wire longer: a fresh connection's handshake, a retransmit, a busy
# machine). Measured without it (bench/replicate_rate.py --wall: 300 jobs at 240/min, so the
# window is full from the second minute, every call 0.1 s on the wire): 3 of 303 creates
# throttled. It costs 1/61 of the rate, and only while the window is full.
ARRIVAL_MARGIN_S = 1.0


class RateLimiter:
    """Creates per minute as the server counts them (any 60 s window) plus a token bucket, so a
    burst never spends the whole window at once. `blocked_until` holds every create back until
    the server's last "retry after" hint has passed."""

    def __init__(self, per_min: int, burst: int, clock: Clock) -> None:
        self.per_min = per_min
        self.burst = max(1, min(burst, per_min))
        self.clock = clock
        self._tokens = float(self.burst)
        self._refilled = clock()
        self._sent: deque[float] = deque()  # send times inside the last window
        self.blocked_until = 0.0

    def wait_s(self) -> float:
        """Seconds until a create may be sent (0 when it may go now)."""
        now = self.clock()
        self._refill(now)
        while self._sent and self._sent[0] <= now - WINDOW_S - ARRIVAL_MARGIN_S:
            self._sent.popleft()
        waits = [self.blocked_until - now]
        if self._tokens < 1:
            waits.append((1 - self._tokens) * WINDOW_S / self.per_min)
        if len(self._sent) >= self.per_min:
            waits.append(self._sent[0] + WINDOW_S + ARRIVAL_MARGIN_S - now)
        return max(0.0, *waits)

    def take(self) -> None:
        """Record a create being sent; call only when `wait_s()` is 0."""
        now = self.clock()
        self._refill(now)
        self._tokens -= 1
        self._sent.append(now)

    def block(self, seconds: float) -> None:
        """The server said to wait: no create until then (a later hint only extends it)."""
        self.blocked_until = max(self.blocked_until, self.clock() + seconds)
        # The server's window is full: the bucket starts empty again after the pause.
        self._tokens = min(self._tokens, 0.0)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.per_min / WINDOW_S)
        self._refilled = now


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter on the upper half, bounded in attempts and
    in total time from the first try."""

    base_s: float
    cap_s: float
    max_attempts: int
    max_total_s: float
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Wait before try `attempt + 1`, after `attempt` failed tries (attempt >= 1)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def gives_up(self, attempt: int, elapsed_s: float) -> bool:
        return attempt >= self.max_attempts or elapsed_s >= self.max_total_s


_RESETS_IN = re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)


def retry_hint_s(retry_after: str | None, detail: str | None) -> float | None:
    """The server's hint: a `Retry-After` header in seconds, else "resets in ~Ns" in the body."""
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass  # an HTTP date: fall back to the body
    if detail:
        match = _RESETS_IN.search(detail)
        if match:
            return float(match.group(1))
    return None


def hint_jitter(hint_s: float, rng: random.Random) -> float:
    """Wait a little past the hint, never before it: many clients woken together would collide."""
    return hint_s + rng.uniform(0.05, 0.25) * math.sqrt(max(1.0, hint_s))


@dataclass
class TransientPolicy:
    """How a job that meets a transient fault (network or DNS down, 5xx after the call's own
    retries, a full disk, out of memory) waits within a run: not charged an attempt, set aside
    for a growing, jittered delay, and once it has waited `patience_s` in this run, left for the
    next run, which tries it at once without `retry`. The fault is the environment's, not the
    job's: a minute of DNS outage must not fail a book."""

    base_s: float = 2.0
    cap_s: float = 120.0
    patience_s: float = 900.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, deferrals: int) -> float | None:
        """Wait before the next try after the job's `deferrals`-th transient fault in this run
        (>= 1); None when its patience for this run is spent."""
        waited = sum(self._ceiling(n) for n in range(1, deferrals))
        if waited >= self.patience_s:
            return None
        ceiling = self._ceiling(deferrals)
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def _ceiling(self, deferrals: int) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** max(0, deferrals - 1))
