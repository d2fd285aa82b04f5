"""Ledger and orchestrator cost, measured side by side in one run.

1. Ledger: claim + heartbeat + publish (fenced replace, folder fsync, commit) per job, on a real
   SQLite file: median and p95 milliseconds, against the 2 ms target.
2. Orchestrator share: a synthetic book rendered by the real executor with a fixed-latency
   engine on N CPU workers. Devices are busy while their engine renders; the share is the rest
   of the steady-state window (first job started to last job done), against the 1 % target.

    python bench/ledger.py [--jobs 2000] [--render-jobs 800] [--latency-ms 50] [--workers 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from songbatch import render as render_module
from songbatch.engines.base import JobRequest
from songbatch.events import RunEvent
from songbatch.ledger import JobRow, Ledger, ManifestRecord, PlanRow, Publication
from songbatch.render import RenderOptions, render
from songbatch.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.books import book_manifest, synthetic_profile
from helpers.plugins import use_test_plugins
from helpers.specs import bare_spec

use_test_plugins()  # the synthetic engine is the tests' plugin, in this process and its workers


def ledger_ops(folder: Path, count: int) -> list[float]:
    jobs = [
        JobRow(
            f"{i:064x}", "speech", "synthetic", "tone", JobRequest("speech", str(i), 0), 10, 1000
        )
        for i in range(count)
    ]
    rows = [PlanRow(0, i, job.key, 0) for i, job in enumerate(jobs)]
    record = ManifestRecord("/bench.yaml", "audiobook", "B", "b", "s", "p", "x", bare_spec())
    out = folder / "chunks"
    out.mkdir()
    timings = []
    with Ledger(folder / "ledger.db") as ledger:
        ledger.apply_plan(record, jobs, rows)
        for _ in range(count):
            tmp = folder / "chunk.tmp"
            tmp.write_bytes(b"x" * 4096)  # the worker's file; not the ledger's cost
            started = time.perf_counter()
            [lease] = ledger.claim(limit=1, worker="w", device="cpu", lease_s=60)
            ledger.heartbeat([lease.token], 60)
            ledger.publish_many([Publication(lease, tmp, out / lease.key, "s", 1000, 50)])
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def orchestrator_share(folder: Path, jobs: int, latency_ms: int, workers: int) -> dict[str, float]:
    chapters = max(1, jobs // 20)
    synthetic_profile(folder, latency_ms=latency_ms, devices=f"cpu:{workers}")
    manifest = book_manifest(
        folder, chapters=chapters, sentences=jobs // chapters, formats="[flac]"
    )
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    engine_ms: dict[str, float] = {}

    def observe(event: RunEvent) -> None:
        now = time.monotonic()
        if event.worker is None:
            return
        if event.kind == "job-started":
            starts.setdefault(event.worker, now)
        if event.kind == "job-done":
            ends[event.worker] = now
            engine_ms[event.worker] = engine_ms.get(event.worker, 0) + event.data["engine_ms"]

    cpu_started = time.process_time()
    report = render([manifest], RenderOptions(workspace=Workspace(folder)), observe)
    coordinator_cpu = time.process_time() - cpu_started
    assert report.exit_code == 0, report
    # Per device, from its first job to its last: a device's start-up (spawn, imports, engine
    # load) is not orchestration, and the devices start a little apart on a small machine.
    windows = {w: ends[w] - starts[w] for w in starts}
    busy = sum(engine_ms.values()) / 1000
    return {
        "jobs": report.summary.published,
        "window_s": max(ends.values()) - min(starts.values()),
        "device_busy": busy / sum(windows.values()),
        "ideal_s": report.summary.published * latency_ms / 1000 / workers,
        "coordinator_cpu_s": coordinator_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--render-jobs", type=int, default=800)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        timings = ledger_ops(Path(folder), args.jobs)
    median = statistics.median(timings)
    p95 = statistics.quantiles(timings, n=20)[-1]
    print(f"ledger claim+heartbeat+publish: {args.jobs} jobs")
    print(
        f"  median {median:.2f} ms, p95 {p95:.2f} ms; target median <= 2 ms:"
        f" ratio {median / 2:.2f} of the budget"
    )
    print(f"orchestrator: {args.render_jobs} jobs x {args.latency_ms} ms on {args.workers} workers")
    # Side by side: the assembly thread (and its ffmpeg) at the run's own CPU priority, and
    # lowered as renders run it (render.ASSEMBLY_NICENESS).
    shares = {}
    for label, niceness in (("assembly at the run's priority", 0), ("assembly niced (now)", None)):
        saved = render_module.ASSEMBLY_NICENESS
        if niceness is not None:
            render_module.ASSEMBLY_NICENESS = niceness
        try:
            with tempfile.TemporaryDirectory() as folder:
                share = orchestrator_share(
                    Path(folder), args.render_jobs, args.latency_ms, args.workers
                )
        finally:
            render_module.ASSEMBLY_NICENESS = saved
        shares[label] = overhead = 1 - share["device_busy"]
        print(
            f"  {label}: first job to last {share['window_s']:.2f} s vs ideal"
            f" {share['ideal_s']:.2f} s; devices busy {share['device_busy']:.2%} of their"
            f" windows; orchestrator share {overhead:.2%} (target <= 1 %);"
            f" coordinator CPU {share['coordinator_cpu_s']:.2f} s"
        )
    before, now = shares.values()
    print(f"  share now / at the run's priority: {now / before:.2f}" if before else "")


if __name__ == "__main__":
    main()
