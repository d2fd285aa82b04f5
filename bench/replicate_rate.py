"""Create rate against the fake Replicate server (tests/helpers/fake_replicate.py).

The real executor and the real `replicate` client, the fake enforcing its own limit over any
sliding 60 s window. Two kinds of run:

- virtual (the default): 2 s model latency on a virtual clock, where calls take no time; the
  achieved create rate over the first N virtual minutes against the limit.
- `--wall`: real time, every call held 0.1 s on the wire (a real network's round trip), 3 s
  predictions, a 300-job book. The pace of the creates against the configured rate (the
  limiter's own schedule: the burst at once, then the rate) at 600/min, and at 240/min, where
  the 60 s window is full from the second minute on (the case a round trip's jitter could push
  over the server's count). `--connections 1`: one call at a time (lists still poll many).

Both print the 429s the fake's limit gave (songbatch going too fast: the goal is zero).

    python bench/replicate_rate.py [--minutes 5]
    python bench/replicate_rate.py --wall [--jobs 300] [--round-trip 0.1] [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.books import book_manifest
from helpers.fake_replicate import FakeReplicate, VirtualClock
from helpers.remote import remote_profile
from songbatch.remote.executor import RemoteHooks
from songbatch.render import RenderOptions, render
from songbatch.workspace import Workspace


def book(tmp: Path, jobs: int, rate: str, predict_s: float) -> Path:
    """A book of at least `jobs` sentences, a job each, in chapters of about 100."""
    chapters = max(1, jobs // 100)
    predict = f"{{base_s: {predict_s}, per_audio_s: 0}}"
    remote_profile(tmp, rate=rate, poll_s=1.0, predict=predict)
    sentences = -(-jobs // chapters)
    return book_manifest(
        tmp, chapters=chapters, sentences=sentences, formats="[flac]", profile="remote.yaml"
    )


def measure(rate: str, limit: int, minutes: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        manifest = book(tmp, int(limit * minutes * 1.1) + 5, rate, 2.0)
        clock = VirtualClock()
        with FakeReplicate(clock, latency_s=2.0, limit_per_min=limit) as fake:
            os.environ.update(fake.env())
            hooks = RemoteHooks(clock=clock, sleep=clock.sleep, rng=random.Random(1), virtual=True)
            started = time.perf_counter()
            render([manifest], RenderOptions(workspace=Workspace(tmp), remote_hooks=hooks))
            wall = time.perf_counter() - started
            times = [record.at for record in fake.state.creates]
            first = times[0]
            window = [t for t in times if t < first + minutes * 60]
            return {
                "creates": len(window),
                "per_min": len(window) / minutes,
                "throttled": fake.state.throttled,
                "max_in_window": fake.state.max_in_window,
                "wall_s": wall,
            }


def measure_wall(
    jobs: int, round_trip_s: float, limit: int, burst: int, in_flight: int, connections: int
) -> dict[str, float]:
    """One book in real time; the creates' pace is measured from the fake's own record."""
    rate = (
        f"{{creates_per_min: {limit}, burst: {burst}, concurrency: {in_flight},"
        f" connections: {connections}}}"
    )
    with tempfile.TemporaryDirectory() as folder:
        manifest = book(Path(folder), jobs, rate, 3.0)
        fake = FakeReplicate(latency_s=3.0, limit_per_min=limit, round_trip_s=round_trip_s)
        with fake:
            os.environ.update(fake.env())
            started = time.perf_counter()
            report = render(
                [manifest],
                RenderOptions(
                    workspace=Workspace(Path(folder)),
                    remote_hooks=RemoteHooks(rng=random.Random(1)),
                ),
            )
            wall = time.perf_counter() - started
        state = fake.state
        times = sorted(record.at for record in state.creates)
        span = times[-1] - times[0]
        # The limiter's own schedule for these creates: `burst` at once, then one per 60/limit s.
        ideal = max(0, len(times) - burst) * 60.0 / limit
        calls = state.calls
        return {
            "jobs": jobs,
            "exit": report.exit_code,
            "creates": len(times),
            "span_s": span,
            "per_min": (len(times) - 1) / span * 60 if span else float("nan"),
            "of_schedule": ideal / span if span else float("nan"),
            "throttled": state.throttled,
            "early": state.early_creates,
            "max_in_window": state.max_in_window,
            "max_in_flight": state.max_in_flight,
            "lists": calls["list"],
            "gets": calls["get"],
            "cancels": calls["cancel"],
            "wall_s": wall,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--wall", action="store_true", help="the real-time, round-trip run")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--round-trip", type=float, default=0.1)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if args.wall:
        wall_runs(args.jobs, args.round_trip, args.connections)
        return
    for name, rate, limit in (
        (
            "standard 600/min, burst 10, 64 in flight",
            "{creates_per_min: 600, burst: 10, concurrency: 64}",
            600,
        ),
        ("low-credit preset 6/min, burst 1", "low-credit", 6),
    ):
        r = measure(rate, limit, args.minutes)
        print(
            f"{name}: {r['creates']:.0f} creates in {args.minutes:g} virtual min ="
            f" {r['per_min']:.1f}/min, {r['per_min'] / limit:.3f} of the limit;"
            f" 429s from the fake's limit: {r['throttled']:.0f};"
            f" most in any 60 s: {r['max_in_window']:.0f}; wall {r['wall_s']:.1f} s"
        )


def wall_runs(jobs: int, round_trip_s: float, connections: int) -> None:
    for limit in (600, 240):
        r = measure_wall(jobs, round_trip_s, limit, 10, 64, connections)
        print(
            f"real time, {round_trip_s:g} s round trip, 3 s predictions, {jobs} jobs,"
            f" {limit}/min burst 10, 64 in flight, {connections} connection(s):"
            f" exit {r['exit']}, {r['creates']} creates in {r['span_s']:.1f} s ="
            f" {r['per_min']:.0f}/min, {r['of_schedule']:.3f} of the limiter's schedule;"
            f" 429s from the fake's limit: {r['throttled']}, creates inside a hint:"
            f" {r['early']}, most in any 60 s: {r['max_in_window']};"
            f" calls at once at most {r['max_in_flight']};"
            f" polls: {r['lists']} list pages + {r['gets']} GETs; cancels {r['cancels']};"
            f" wall {r['wall_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
