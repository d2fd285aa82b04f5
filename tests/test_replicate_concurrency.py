"""Calls side by side: the executor's pool of threads (remote/calls.py) and, through the real
`replicate` client against the fake server, creates and polls on the wire together, never more
than `rate.connections` at once, polls of many predictions answered by one page of the list.

The fake holds every call on the wire for a real round trip while the virtual clock stands, so
calls overlap in real time as they would on a network, and the run stays in virtual time.
(Money under every interleaving: tests/test_budget.py. The rate with a real round trip:
bench/replicate_rate.py --wall.)
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import pytest

from helpers.books import book_manifest
from helpers.fake_replicate import FakeReplicate, VirtualClock
from helpers.remote import remote_profile, render_virtual
from songbatch.remote.calls import CallPool, Reply, run_together

JOBS = 40
CONNECTIONS = 4


def test_calls_go_out_side_by_side_never_more_than_the_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    remote_profile(
        tmp_path,
        rate=f"{{creates_per_min: 600, burst: 10, concurrency: 16, connections: {CONNECTIONS}}}",
    )
    manifest = book_manifest(
        tmp_path, chapters=2, sentences=JOBS // 2, formats="[flac]", profile="remote.yaml"
    )
    with FakeReplicate(clock, latency_s=2.0, round_trip_s=0.05) as fake:
        report = render_virtual(tmp_path, manifest, fake, clock, monkeypatch)
        state = fake.state
        assert max(fake.creates_by_input().values()) == 1
    assert report.exit_code == 0, report.failed
    assert 1 < state.max_in_flight <= CONNECTIONS
    assert state.calls["create"] == JOBS
    # Polled by pages of the list, not one GET per prediction per second (the predictions run
    # 2 s, polled every 1 s: one at a time that would be about 2 GETs each).
    assert state.calls["list"] > 0 and state.calls["get"] < JOBS / 4


def test_the_pool_runs_at_most_its_size_at_once_and_hands_every_reply_to_the_caller() -> None:
    pool = CallPool(3, clock=lambda: 0.0)
    release = threading.Event()
    started = threading.Condition()
    running = 0

    def work(value: int) -> int:
        nonlocal running
        with started:
            running += 1
            started.notify_all()
        release.wait(timeout=30)
        if value == 5:
            raise ValueError("the sixth fails")
        return value * 10

    handled: list[tuple[str, int | str]] = []

    def then(reply: Reply[int]) -> None:
        try:
            handled.append((threading.current_thread().name, reply.get()))
        except ValueError as exc:
            handled.append((threading.current_thread().name, str(exc)))

    try:
        for value in range(6):
            pool.submit(functools.partial(work, value), then)
        with started:
            assert started.wait_for(lambda: running == 3, timeout=30)
        assert pool.free == 0 and pool.busy
        assert running == 3  # the other three wait for a thread
        release.set()
        while len(handled) < 6:
            for hand_over in pool.replies(None):
                hand_over()
    finally:
        release.set()
        pool.close()
    me = threading.current_thread().name
    assert sorted(handled, key=str) == sorted(
        [(me, 0), (me, 10), (me, 20), (me, 30), (me, 40), (me, "the sixth fails")], key=str
    )
    assert not pool.busy and pool.free == 3


def test_the_last_cancels_go_together_and_a_stuck_one_is_not_waited_for_past_the_deadline() -> None:
    """How a stopped run sends its cancels (run_together): side by side on fresh threads, every
    one tried, a call that never returns given up at the deadline."""
    stuck = threading.Event()
    done: list[int] = []

    def never_returns() -> None:
        stuck.wait(timeout=30)

    def fails() -> None:
        raise OSError("the network is gone")

    try:
        works = [never_returns, fails, *(functools.partial(done.append, i) for i in range(3))]
        run_together(works, size=2, timeout_s=0.5)
    finally:
        stuck.set()
    assert sorted(done) == [0, 1, 2]
