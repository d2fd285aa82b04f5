"""Rates and the ETA from measured completions (songbatch.progress): plain arithmetic on the
timestamps passed in, so no test waits."""

from __future__ import annotations

import pytest

from songbatch.progress import RunMeter, Throughput


def test_no_rate_before_two_distinct_moments() -> None:
    meter = Throughput()
    assert meter.per_second(10.0) is None
    meter.record(10.0)
    assert meter.per_second(20.0) is None  # one completion: the clock starts there
    meter.record(10.0, count=3)  # a batch finishing with it is still the same moment
    assert meter.per_second(20.0) is None


def test_rate_is_measured_from_the_first_completion_not_the_engine_load() -> None:
    meter = Throughput()
    for t in (100.0, 102.0, 104.0, 106.0):  # loading took 100 s; then one job every 2 s
        meter.record(t)
    assert meter.per_second(106.0) == pytest.approx(0.5)


def test_a_stall_lowers_the_rate_before_the_next_completion() -> None:
    meter = Throughput()
    for t in (0.0, 1.0, 2.0):
        meter.record(t)
    assert meter.per_second(2.0) == pytest.approx(1.0)
    assert meter.per_second(20.0) == pytest.approx(0.1)


def test_batches_count_per_job_not_per_moment() -> None:
    meter = Throughput()
    for t in (10.0, 20.0, 30.0):
        meter.record(t, count=8)  # eight jobs every ten seconds
    assert meter.per_second(30.0) == pytest.approx(0.8)


def test_the_window_follows_a_change_of_pace() -> None:
    meter = Throughput(window=4)
    for t in range(0, 100, 10):  # slow: one per 10 s
        meter.record(float(t))
    for t in (91.0, 92.0, 93.0, 94.0):  # then fast: one per second
        meter.record(t)
    assert meter.per_second(94.0) == pytest.approx(1.0)


def test_eta_from_the_overall_rate_of_every_device() -> None:
    run = RunMeter(total=10)
    run.started("cuda:0", "a")
    run.started("cuda:1", "b")
    assert run.eta_s(5.0) is None  # nothing measured yet
    run.done("cuda:0", "a", 10.0, audio_ms=3000, render_ms=1000)
    run.done("cuda:1", "b", 12.0, audio_ms=3000, render_ms=1500)
    run.failed("cuda:0", "c", 14.0)  # a failed job is no longer waiting either
    assert run.finished == 3 and run.remaining() == 7
    # Two completions after the first in 4 s: 0.5 jobs/s; 7 left.
    assert run.eta_s(14.0) == pytest.approx(14.0)
    assert run.device("cuda:0").done == 1 and run.device("cuda:0").failed == 1
    assert run.device("cuda:0").realtime_factor() == pytest.approx(3.0)
    assert run.device("cuda:1").realtime_factor() == pytest.approx(2.0)


def test_eta_is_zero_and_the_rate_holds_when_nothing_is_left() -> None:
    run = RunMeter(total=2)
    run.done("cpu0", "a", 1.0, audio_ms=1, render_ms=1)
    run.done("cpu0", "b", 3.0, audio_ms=1, render_ms=1)
    assert run.eta_s(3.0) == 0.0
    assert run.per_second(100.0) == pytest.approx(0.5)  # the pace the run ended at


def test_what_a_device_renders() -> None:
    run = RunMeter(total=5)
    run.started("cpu0", "a")
    run.started("cpu0", "b")
    assert run.device("cpu0").rendering == ["a", "b"]
    run.done("cpu0", "a", 1.0, audio_ms=1, render_ms=1)
    assert run.device("cpu0").rendering == ["b"]
    run.returned("cpu0", "b")  # set aside: back to pending, not finished
    assert run.device("cpu0").rendering == [] and run.finished == 1
    run.started("cpu0", "c")
    run.lost("cpu0")  # the worker died
    assert run.device("cpu0").rendering == [] and run.finished == 1
    assert run.device("cpu1").realtime_factor() is None
