"""Profiles and in-process runs for the remote (Replicate) tests and benchmark."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from helpers.fake_replicate import FakeReplicate, VirtualClock
from songbatch.events import RunEvent
from songbatch.remote.executor import RemoteHooks
from songbatch.render import RenderOptions, RenderReport, render
from songbatch.workspace import Workspace


def remote_profile(
    folder: Path,
    *,
    rate: str = "{creates_per_min: 600, burst: 10, concurrency: 32}",
    poll_s: float = 1.0,
    timeout_s: float = 30.0,
    retry: str = "{max_attempts: 6, base_s: 1, cap_s: 60, max_total_s: 3600}",
    caps: str = "",
    hardware_price: float = 0.001,
    predict: str = "{base_s: 1, per_audio_s: 0.5, worst_factor: 3}",
    max_attempts: int = 3,
    patience_s: float = 900.0,
    name: str = "remote.yaml",
) -> Path:
    """Speech and music through one cheap per-second model, one sentence per job."""
    path = folder / name
    path.write_text(
        f"""\
name: remote
speech: {{engine: replicate, model: tts, max_chars: 40}}
music: {{engine: replicate, model: tts}}
devices: cpu:1
lease_seconds: 600
max_attempts: {max_attempts}
transient_patience_s: {patience_s}
replicate:
  hardware_usd_per_s: {{gpu-t4: {hardware_price}}}
  rate: {rate}
  retry: {retry}
  poll_s: {poll_s}
  timeout_s: {timeout_s}
  cancel_grace_s: 2
{caps}
  models:
    tts:
      ref: test/tts
      inputs: {{text: text, seed: seed, reference: voice}}
      price: {{per: second, hardware: gpu-t4}}
      predict: {predict}
""",
        encoding="utf-8",
    )
    return path


def render_virtual(
    workspace: Path,
    manifest: Path,
    fake: FakeReplicate,
    clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
    *,
    seed: int = 1,
    max_spend: float | None = None,
    events: list[RunEvent] | None = None,
    time_limit_s: float | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] | None = None,
) -> RenderReport:
    """The real render path in this process, on the fake's virtual clock. `transport` goes
    under the real client (network faults); `sleep` replaces the clock's (a watchdog)."""
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    hooks = RemoteHooks(
        clock=clock,
        sleep=sleep or clock.sleep,
        rng=random.Random(seed),
        transport=transport,
        virtual=True,
    )
    options = RenderOptions(
        workspace=Workspace(workspace),
        max_spend=max_spend,
        time_limit_s=time_limit_s,
        remote_hooks=hooks,
    )
    sink = events if events is not None else []
    return render([manifest], options, sink.append)


class Watchdog:
    """A virtual sleep that fails the test once the run has slept `limit_s` of virtual time: a
    loop that would never end fails instead of hanging."""

    def __init__(self, clock: VirtualClock, limit_s: float) -> None:
        self.clock = clock
        self.limit_s = limit_s
        self.slept = 0.0

    def __call__(self, seconds: float) -> None:
        self.slept += max(0.0, seconds)
        if self.slept > self.limit_s:
            raise AssertionError(f"still running after {self.limit_s:.0f} s of virtual time")
        self.clock.sleep(seconds)
