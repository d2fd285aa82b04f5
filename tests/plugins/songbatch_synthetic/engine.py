"""A stand-in engine with a fixed latency: a tone whose length follows the text.

For benchmarks and chaos tests of everything around the model (ledger, workers, publish,
assembly), where a real model's seconds per job would only hide the orchestrator's cost. It is
not part of songbatch: a plugin (its declaration in __init__.py), imported by `load_engine` in a
worker as a third party's engine would be; a profile has to name `engine: synthetic`.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Client

import numpy as np

from songbatch.engines.base import EngineSpec, ProgressFn, RenderRequest, RenderResult
from songbatch.errors import EngineError

SAMPLE_RATE = 16000


class SyntheticEngine:
    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.sample_rate = SAMPLE_RATE
        self.latency_s = float(spec.params.get("latency_ms", 50)) / 1000
        self.chars_per_second = float(spec.params.get("chars_per_second", 14.0))
        # Tests of failure handling: a job whose text contains this marker fails for good.
        self.fail_marker = spec.params.get("fail_marker")
        # Tests of transient faults: while this file exists, every call fails as a full disk.
        self.disk_full_while = spec.params.get("disk_full_while")
        # Tests of a poisoned device: the call raises what torch raises after a device-side
        # assert (the CUDA context is unusable from then on).
        self.device_assert_marker = spec.params.get("device_assert_marker")
        # `batch_size: auto`: what a GPU engine would measure from free memory at load, given.
        if spec.batch_auto:
            self.batch_limit = int(spec.params.get("auto_batch_limit", 1))
        # ... and what it would measure after its first call (a peak below its model's).
        self.limit_after_first_call = spec.params.get("auto_batch_limit_after")
        # Tests that kill a worker mid-render: each call first says what it renders, where,
        # to the test listening on this socket, and waits until the test lets it go on.
        self.announce = spec.params.get("announce")

    def render(
        self, requests: Sequence[RenderRequest], progress: ProgressFn
    ) -> list[RenderResult | EngineError]:
        """Like a batched model: one latency for the whole call; a marked request fails alone."""
        if self.announce:
            _announce(str(self.announce), requests)
        # A job's own `latency_ms` (benchmarks of jobs of many lengths) is its call's, the
        # longest of a batch's.
        own = [float(r.params["latency_ms"]) / 1000 for r in requests if "latency_ms" in r.params]
        time.sleep(max(own, default=self.latency_s))
        progress()
        if self.disk_full_while and os.path.exists(str(self.disk_full_while)):
            raise OSError(errno.ENOSPC, "No space left on device (synthetic)")
        marker = self.device_assert_marker
        if marker and any(str(marker) in request.text for request in requests):
            raise RuntimeError(
                "CUDA error: device-side assert triggered\nCUDA kernel errors might be"
                " asynchronously reported at some other API call (synthetic)"
            )
        results: list[RenderResult | EngineError] = []
        for request in requests:
            if self.fail_marker and str(self.fail_marker) in request.text:
                message = f"synthetic failure: text contains {self.fail_marker!r}"
                results.append(EngineError(message, retryable=False))
                continue
            result = self._tone(request)
            result.info["batch"] = len(requests)
            results.append(result)
        if self.limit_after_first_call is not None:
            self.batch_limit = int(self.limit_after_first_call)
        return results

    def _tone(self, request: RenderRequest) -> RenderResult:
        seconds = request.duration_s or max(0.2, len(request.text) / self.chars_per_second)
        samples = round(seconds * self.sample_rate)
        rng = np.random.default_rng(request.seed + len(request.text))
        frequency = 180 + 200 * rng.random()
        t = np.arange(samples, dtype=np.float32) / self.sample_rate
        audio = (0.2 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
        return RenderResult(audio=audio, sample_rate=self.sample_rate, info={"synthetic": True})

    def close(self) -> None:
        pass


def _announce(address: str, requests: Sequence[RenderRequest]) -> None:
    """Tell the test which jobs this process renders (and, in a Ray actor, the actor's name,
    which the test kills it by), then wait for it; no test listening any more: carry on."""
    ray = sys.modules.get("ray")  # imported in a Ray worker; never imported here for it
    actor = ray.get_runtime_context().get_actor_name() if ray is not None else None
    voices = [request.voice_path for request in requests]
    try:
        with Client(address, family="AF_UNIX") as conn:
            conn.send({"keys": [r.key for r in requests], "actor": actor, "voices": voices})
            conn.recv()  # the test answers (or is gone) once it has done what it wanted
    except (OSError, EOFError):
        pass


def load(spec: EngineSpec, device: str) -> SyntheticEngine:
    del device
    # `load_ms`: a model's load (weights read, or fetched on a fresh node) taking that long.
    time.sleep(float(spec.params.get("load_ms", 0)) / 1000)
    return SyntheticEngine(spec)
