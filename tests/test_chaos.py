"""Kill runs with SIGKILL at random moments and at named crash points: nothing finished is lost,
nothing is published twice, no reader sees a torn file.

The engine is the fixed-latency synthetic one: the model is not what these tests break, and its
short jobs put many kills into the ledger, publish and assembly paths rather than into a sleep.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from helpers.books import (
    book_manifest,
    run_songbatch,
    start_render,
    synthetic_profile,
    worker_processes,
)
from helpers.verify import Watcher, verify_done_exactly_once
from songbatch.crashpoints import ENV, POINTS
from songbatch.ledger import Ledger

pytestmark = pytest.mark.skipif(os.name == "nt", reason="kill -9 of a process group is POSIX")

KILLS_PER_SEED = int(os.environ.get("SONGBATCH_CHAOS_KILLS", "50"))
SEEDS = [int(s) for s in os.environ.get("SONGBATCH_CHAOS_SEEDS", "1,2,3,4,5").split(",")]


def _done_jobs(workspace: Path) -> int:
    path = workspace / ".songbatch" / "ledger.db"
    if not path.exists():
        return 0
    with Ledger(path) as ledger:
        return sum(c.jobs for c in ledger.state_counts() if c.state == "done")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_kill_minus_nine_at_random_points(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    # 200 jobs of 500 ms on 4 workers: about 25 s of rendering, so the kills land all through
    # the work (claims, renders, publishes, assembly), not after it.
    synthetic_profile(tmp_path, latency_ms=500)
    manifest = book_manifest(tmp_path, chapters=20, sentences=10)  # 200 jobs
    watcher = Watcher(tmp_path / ".songbatch" / "chunks", tmp_path / "outputs")
    watcher.start()
    mid_work = 0
    try:
        for kill in range(KILLS_PER_SEED):
            proc = start_render(tmp_path, manifest, quiet=True)
            time.sleep(rng.uniform(0.5, 2.5))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            done = _done_jobs(tmp_path)
            mid_work += proc.returncode == -signal.SIGKILL and done < 200
            print(f"seed {seed} kill {kill}: exit {proc.returncode}, {done} jobs done")
        final = run_songbatch("render", str(manifest), "--workspace", str(tmp_path), cwd=tmp_path)
    finally:
        watcher.stop()
    assert mid_work >= min(10, KILLS_PER_SEED), f"seed {seed}: only {mid_work} kills mid-work"
    assert final.returncode == 0, f"seed {seed}: {final.stderr[-2000:]}"
    assert watcher.torn == [], f"seed {seed}: torn files seen: {watcher.torn[:5]}"
    assert watcher.checked > 0
    counts = verify_done_exactly_once(tmp_path)
    assert counts["jobs"] == 200, f"seed {seed}"
    assert counts["outputs"] == 21, f"seed {seed}"  # 20 chapter files and the m4b


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_named_crash_points_end_with_one_file_and_one_done_row(tmp_path: Path, point: str) -> None:
    synthetic_profile(tmp_path, latency_ms=5, devices="cpu:2")
    manifest = book_manifest(tmp_path, chapters=2, sentences=3, formats="[flac]")
    crashed = run_songbatch(
        "render", str(manifest), "--workspace", str(tmp_path), cwd=tmp_path, env={ENV: point}
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    resumed = run_songbatch("render", str(manifest), "--workspace", str(tmp_path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    counts = verify_done_exactly_once(tmp_path)
    assert counts == {"jobs": 6, "outputs": 2}


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_job_rendered(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=150, devices="cpu:2")
    manifest = book_manifest(tmp_path, chapters=4, sentences=10, formats="[flac]")
    proc = start_render(tmp_path, manifest)
    killed = 0
    deadline = time.monotonic() + 60
    while killed < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(1.0)
        workers = worker_processes(proc.pid)
        if workers:
            workers[0].kill()
            killed += 1
    _, stderr = proc.communicate(timeout=300)
    assert killed >= 1
    assert proc.returncode == 0, stderr[-2000:]
    assert stderr.count("worker-died") == killed
    verify_done_exactly_once(tmp_path)


def test_a_second_render_on_a_held_ledger_exits_75_and_claims_nothing(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=300, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=1, sentences=20, formats="[flac]")
    first = start_render(tmp_path, manifest, quiet=True)
    try:
        ledger = tmp_path / ".songbatch" / "ledger.db"
        deadline = time.monotonic() + 60
        while not ledger.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        started = time.monotonic()
        second = run_songbatch("render", str(manifest), "--workspace", str(tmp_path), cwd=tmp_path)
        assert second.returncode == 75, second.stderr
        assert time.monotonic() - started < 10
        assert "another run holds" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # The killed run's lock is free at once and its leases are recovered.
    final = run_songbatch("render", str(manifest), "--workspace", str(tmp_path), cwd=tmp_path)
    assert final.returncode == 0, final.stderr[-2000:]
    verify_done_exactly_once(tmp_path)
