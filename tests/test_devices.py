"""`--devices` parsing and the plain (non-terminal) run report."""

from __future__ import annotations

import io
import os
import re

import pytest

from songbatch.cli.reporter import PlainReporter, make_reporter
from songbatch.errors import InputError
from songbatch.events import RunEvent
from songbatch.executors.devices import cuda_device_count, parse_devices


def test_cpu_slots_get_one_thread_each_and_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    slots, warning = parse_devices("cpu:3")
    assert warning is None
    assert [s.name for s in slots] == ["cpu0", "cpu1", "cpu2"]
    assert all(s.device == "cpu" for s in slots)
    assert all(
        s.env["OMP_NUM_THREADS"] == "1" and s.env["CUDA_VISIBLE_DEVICES"] == "" for s in slots
    )
    assert [s.name for s in parse_devices("cpu")[0]] == ["cpu0"]


def test_cuda_indices_pin_each_worker_to_its_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    slots, _ = parse_devices("0, 2")
    assert [(s.name, s.device, s.env["CUDA_VISIBLE_DEVICES"]) for s in slots] == [
        ("cuda0", "cuda", "0"),
        ("cuda2", "cuda", "2"),
    ]


def test_auto_uses_the_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert cuda_device_count() == 2
    slots, warning = parse_devices("auto")
    assert warning is None
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["1", "3"]


def test_indices_count_among_the_devices_a_scheduler_gave_us(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slurm or Kubernetes set CUDA_VISIBLE_DEVICES=2,3: --devices 0,1 means those two, and
    UUIDs pass through as they are."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in parse_devices("0,1")[0]] == ["2", "3"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in parse_devices("1")[0]] == ["3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5d1c,GPU-77aa")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in parse_devices("1")[0]] == ["GPU-77aa"]


@pytest.mark.parametrize(
    ("visible", "devices", "message"),
    [
        ("2,3", "2", "there is no CUDA device 2: 2 visible (0 to 1)"),
        ("0", "0,1", "there is no CUDA device 1: 1 visible (0 to 0)"),
        ("", "0", "no CUDA device is visible here"),
        ("-1", "3", "no CUDA device is visible here"),
    ],
)
def test_devices_that_do_not_exist_are_refused(
    monkeypatch: pytest.MonkeyPatch, visible: str, devices: str, message: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with pytest.raises(InputError, match=re.escape(message)):
        parse_devices(devices)


def test_more_cpu_workers_than_cores_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert parse_devices("cpu:2")[1] is None
    slots, warning = parse_devices("cpu:3")
    assert len(slots) == 3
    assert warning is not None and "more workers than the 2 CPU core(s)" in warning


def test_auto_without_cuda_falls_back_to_the_cpu_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    slots, warning = parse_devices("auto")
    assert [s.device for s in slots] == ["cpu"]
    assert warning is not None and "CPU" in warning


def test_plain_reporter_writes_timestamped_lines() -> None:
    stream = io.StringIO()
    reporter = make_reporter(stream)
    assert isinstance(reporter, PlainReporter)
    with reporter:
        reporter.observe(RunEvent("run-started", data={"jobs": 3, "workers": 2}))
        reporter.observe(RunEvent("job-started", worker="cpu0", job="a" * 64))
        reporter.observe(
            RunEvent(
                "job-done",
                worker="cpu0",
                job="a" * 64,
                data={"duration_ms": 2500, "render_ms": 400},
            )
        )
        fast = {"duration_ms": 5400, "render_ms": 12}  # the offline engine's
        reporter.observe(RunEvent("job-done", worker="cpu1", job="b" * 64, data=fast))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # job-started is too chatty for a log
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(stamp + r" run-started 3 job\(s\) on 2 worker\(s\)", lines[0])
    assert re.fullmatch(stamp + r" job-done cpu0 aaaaaaaaaaaa 2\.5 s audio in 0\.4 s", lines[1])
    assert re.fullmatch(stamp + r" job-done cpu1 bbbbbbbbbbbb 5\.4 s audio in 12 ms", lines[2])
