"""Planning speed and status speed, printed as ratios of their targets.

- the 12 chapters of ../shared/corpus/alice.txt (read from there, never copied): target 1 s
- a synthetic book of 100,000 chunks: target 10 s
- `status` on that ledger: target 0.5 s

    python bench/plan.py [--chunks 100000] [--corpus ../shared/corpus/alice.txt]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from songbatch.ledger import Ledger
from songbatch.planner import commit_plan
from songbatch.render import load_all
from songbatch.status import manifest_status
from songbatch.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers.books import SENTENCES, synthetic_profile  # noqa: E402
from helpers.plugins import use_test_plugins  # noqa: E402

use_test_plugins()  # the synthetic engine is the tests' plugin


def alice_manifest(folder: Path, corpus: Path) -> Path:
    text = corpus.read_text(encoding="utf-8")
    parts = re.split(r"^CHAPTER [IVXL]+\.?.*$", text, flags=re.MULTILINE)[1:]
    lines = ["kind: audiobook", "title: Alice", "author: Lewis Carroll", "profile: offline"]
    lines += ["formats: [m4b]", "chapters:"]
    for number, body in enumerate(parts[:12], start=1):
        chapter = folder / f"chapter-{number:02d}.txt"
        chapter.write_text(body.strip(), encoding="utf-8")
        lines += [f"  - title: Chapter {number}", f"    text_file: {chapter.name}"]
    path = folder / "alice.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def synthetic_book(folder: Path, chunks: int) -> Path:
    """One sentence per chunk (the synthetic profile's max_chars is 40), 1,000 per chapter."""
    synthetic_profile(folder)
    per_chapter = 1000
    lines = ["kind: audiobook", "title: Huge", "author: Bench", "profile: synthetic.yaml"]
    lines += ["formats: [m4b]", "speak_titles: false", "chapters:"]
    for c in range(chunks // per_chapter):
        body = " ".join(
            f"{SENTENCES[s % len(SENTENCES)][:-1]} {c}-{s}." for s in range(per_chapter)
        )
        chapter = folder / f"c{c:04d}.txt"
        chapter.write_text(body, encoding="utf-8")
        lines += [f"  - title: Part {c + 1}", f"    text_file: {chapter.name}"]
    path = folder / "huge.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plan_and_commit(manifest: Path, workspace: Workspace) -> tuple[float, float, int]:
    started = time.perf_counter()
    [planned] = load_all([manifest], None, workspace)
    planned_s = time.perf_counter() - started
    with Ledger(workspace.ledger_path) as ledger:
        commit_plan(ledger, planned.plan, workspace)
    return planned_s, time.perf_counter() - started, len(planned.plan.rows)


def report(name: str, seconds: float, target: float) -> None:
    print(f"  {name}: {seconds:.3f} s (target {target} s, ratio {seconds / target:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared/corpus/alice.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        workspace = Workspace(folder)
        plan_s, total_s, rows = plan_and_commit(alice_manifest(folder, args.corpus), workspace)
        print(f"alice.txt, 12 chapters, {rows} chunks:")
        report("load + chunk + key (the dry run)", plan_s, 1.0)
        report("... and commit to the ledger", total_s, 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        workspace = Workspace(folder)
        manifest = synthetic_book(folder, args.chunks)
        plan_s, total_s, rows = plan_and_commit(manifest, workspace)
        print(f"synthetic book, {rows} chunks:")
        report("load + chunk + key (the dry run)", plan_s, 10.0)
        report("... and commit to the ledger", total_s, 10.0)
        _, again_s, _ = plan_and_commit(manifest, workspace)
        report("re-plan, unchanged (writes nothing)", again_s, 10.0)
        started = time.perf_counter()
        manifest_status(workspace)
        report("status on that ledger", time.perf_counter() - started, 0.5)


if __name__ == "__main__":
    main()
