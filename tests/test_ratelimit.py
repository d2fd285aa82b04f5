"""The create pacer on a virtual clock: never more than the limit in any 60 s window, hints
honoured, backoff bounded."""

from __future__ import annotations

import random

from helpers.fake_replicate import VirtualClock
from songbatch.ratelimit import (
    ARRIVAL_MARGIN_S,
    WINDOW_S,
    Backoff,
    RateLimiter,
    hint_jitter,
    retry_hint_s,
)


def test_no_sixty_second_window_holds_more_than_the_limit_even_with_a_burst() -> None:
    clock = VirtualClock(0.0)
    limiter = RateLimiter(per_min=60, burst=10, clock=clock)
    sent: list[float] = []
    while clock() < 600:
        wait = limiter.wait_s()
        if wait > 0:
            clock.sleep(max(wait, 1e-3))
            continue
        limiter.take()
        sent.append(clock())
    assert max(sum(1 for t in sent if start - 60 < t <= start) for start in sent) <= 60
    assert len(sent) >= 590  # the limit is reached, not just respected


def test_a_hint_blocks_every_create_until_it_has_passed() -> None:
    clock = VirtualClock(0.0)
    limiter = RateLimiter(per_min=600, burst=10, clock=clock)
    limiter.block(hint_jitter(30.0, random.Random(1)))
    assert limiter.wait_s() >= 30.0


def test_hints_come_from_the_header_or_the_body() -> None:
    assert retry_hint_s("7", None) == 7.0
    body = "Request was throttled. Your rate limit resets in ~30s."
    assert retry_hint_s(None, body) == 30.0
    assert retry_hint_s("Wed, 21 Oct 2015 07:28:00 GMT", body) == 30.0
    assert retry_hint_s(None, "no hint") is None


def test_backoff_is_capped_jittered_and_bounded() -> None:
    backoff = Backoff(base_s=1, cap_s=8, max_attempts=5, max_total_s=60, rng=random.Random(2))
    delays = [backoff.delay(attempt) for attempt in range(1, 8)]
    assert all(0.5 <= d <= 8 for d in delays) and max(delays) > 4
    assert backoff.gives_up(5, 0) and backoff.gives_up(1, 60) and not backoff.gives_up(4, 59)


def test_a_send_stays_in_the_window_a_margin_past_the_servers_60_s() -> None:
    """The server counts arrivals: a create sent 60 s after another can arrive less than 60 s
    after it, so the window frees a little later than the server's does."""
    clock = VirtualClock(0.0)
    limiter = RateLimiter(per_min=5, burst=5, clock=clock)
    for _ in range(5):
        limiter.take()
    clock.sleep(WINDOW_S)
    assert limiter.wait_s() == ARRIVAL_MARGIN_S
    clock.sleep(ARRIVAL_MARGIN_S)
    assert limiter.wait_s() == 0
