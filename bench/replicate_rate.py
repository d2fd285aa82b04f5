"""Create rate against the fake Replicate server, in virtual time (tests/helpers/fake_replicate.py).

The real executor and the real `replicate` client, 2 s model latency, the fake enforcing its own
limit over any sliding 60 s window. Prints the achieved create rate over the first N minutes of
virtual time against the limit, and the 429s the fake had to give (songbatch going too fast).

    python bench/replicate_rate.py [--minutes 5]
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


def measure(rate: str, limit: int, minutes: float) -> dict[str, float]:
    jobs = int(limit * minutes * 1.1) + 5
    chapters = max(1, jobs // 100)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        remote_profile(tmp, rate=rate, poll_s=1.0, predict="{base_s: 2, per_audio_s: 0}")
        manifest = book_manifest(
            tmp,
            chapters=chapters,
            sentences=-(-jobs // chapters),
            formats="[flac]",
            profile="remote.yaml",
        )
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
