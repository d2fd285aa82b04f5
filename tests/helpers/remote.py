"""Profiles and in-process runs for the remote (Replicate) tests and benchmark."""

from __future__ import annotations

import random
from pathlib import Path

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
) -> RenderReport:
    """The real render path in this process, on the fake's virtual clock."""
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    options = RenderOptions(
        workspace=Workspace(workspace),
        max_spend=max_spend,
        remote_hooks=RemoteHooks(clock=clock, sleep=clock.sleep, rng=random.Random(seed)),
    )
    sink = events if events is not None else []
    return render([manifest], options, sink.append)
