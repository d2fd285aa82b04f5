"""How close `songbatch cost` comes to what a render then takes, side by side in one run.

For each backend, two books in one workspace: the first is estimated from the defaults and
rendered; the second is estimated after that render (calibrated from the ledger) and rendered.
Printed per book: estimated / measured, for device time and wall time (offline profile, real
espeak-ng on 1 CPU worker) and for spend (the fake Replicate server in virtual time, the real
executor and client; its predictions take a fixed time the profile's predict model does not
know). The goal (issue 10) is within 15 % once calibrated.

    python bench/estimate.py [--chapters 3] [--chars 20000]

The books are chapters of ../shared/corpus/alice.txt, cut to `--chars` characters each.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.fake_replicate import FakeReplicate, VirtualClock
from helpers.remote import remote_profile
from songbatch.estimate import actual, estimate
from songbatch.ledger import Ledger
from songbatch.remote.executor import RemoteHooks
from songbatch.render import RenderOptions, render
from songbatch.workspace import Workspace

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "alice.txt"


def alice_chapters(count: int, chars: int, skip: int) -> list[tuple[str, str]]:
    text = CORPUS.read_text(encoding="utf-8")
    parts = re.split(r"^CHAPTER [IVXLC]+\. ", text, flags=re.M)[1:]
    chapters = []
    for body in parts[skip : skip + count]:
        title, _, rest = body.partition("\n")
        words = " ".join(rest.split())[:chars]
        chapters.append((title.strip(), words.rsplit(".", 1)[0] + "."))
    return chapters


def write_book(folder: Path, name: str, chapters: list[tuple[str, str]], profile: str) -> Path:
    path = folder / f"{name}.yaml"
    lines = [
        "kind: audiobook",
        f"title: {name}",
        "author: Lewis Carroll",
        f"profile: {profile}",
        "formats: [flac]",
        "speak_titles: false",
        "chapters:",
    ]
    for title, words in chapters:
        escaped = words.replace("\\", "\\\\").replace('"', '\\"')
        lines += [f'  - title: "{title}"', f'    text: "{escaped}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def device_ms(workspace: Path) -> int:
    """Device time as the estimate counts it: engine time of every finished render, plus each
    worker's start-up and engine load."""
    with Ledger(workspace / ".songbatch" / "ledger.db") as ledger:
        [engine] = ledger.conn.execute(
            "SELECT SUM(COALESCE(engine_ms, render_ms)) FROM attempts WHERE outcome = 'done'"
        ).fetchone()
        [loads] = ledger.conn.execute("SELECT SUM(startup_ms + load_ms) FROM loads").fetchone()
    return int(engine or 0) + int(loads or 0)


def offline(chapters: int, chars: int) -> None:
    print("offline profile, espeak-ng on 1 CPU worker (estimated / measured):")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        workspace = Workspace(root)
        previous_ms = 0
        for index, label in enumerate(("defaults", "calibrated")):
            book = write_book(
                root, f"book{index}", alice_chapters(chapters, chars, index * chapters), "offline"
            )
            [guess] = estimate([book], [None], workspace, devices="cpu:1")
            started = time.monotonic()
            render([book], RenderOptions(workspace=workspace, devices="cpu:1"))
            wall = time.monotonic() - started
            device = (device_ms(root) - previous_ms) / 1000
            previous_ms += int(device * 1000)
            print(
                f"  {label:10} device time {guess.device_s or 0:7.1f} / {device:7.1f} s"
                f" = {(guess.device_s or 0) / device:5.2f}; wall"
                f" {guess.wall_s or 0:7.1f} / {wall:7.1f} s"
                f" = {(guess.wall_s or 0) / wall:5.2f}"
                f"  [{guess.time_from}]"
            )


def replicate(chapters: int, chars: int) -> None:
    print("fake Replicate, fixed 2.0 s predictions, profile predicts 1 s + 0.5 s/audio s:")
    saved = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            workspace = Workspace(root)
            remote_profile(root, predict="{base_s: 1, per_audio_s: 0.5, worst_factor: 3}")
            clock = VirtualClock()
            spent = 0.0
            with FakeReplicate(clock, latency_s=2.0) as fake:
                os.environ.update(fake.env())
                for index, label in enumerate(("defaults", "calibrated")):
                    book = write_book(
                        root,
                        f"book{index}",
                        alice_chapters(chapters, chars // 4, index * chapters),
                        "remote.yaml",
                    )
                    [guess] = estimate([book], [None], workspace)
                    hooks = RemoteHooks(
                        clock=clock, sleep=clock.sleep, rng=random.Random(index), virtual=True
                    )
                    render([book], RenderOptions(workspace=workspace, remote_hooks=hooks))
                    total = actual(workspace).total.settled_usd
                    cost = total - spent
                    spent = total
                    expected = guess.usd_expected or 0.0
                    print(
                        f"  {label:10} spend ${expected:.4f} / ${cost:.4f}"
                        f" = {expected / cost:5.2f}; worst case reserved"
                        f" ${guess.usd_worst or 0:.4f}  [{guess.money_from}]"
                    )
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=3)
    parser.add_argument("--chars", type=int, default=20000)
    args = parser.parse_args()
    offline(args.chapters, args.chars)
    replicate(args.chapters, args.chars)


if __name__ == "__main__":
    main()
