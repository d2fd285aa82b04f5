"""Benchmark: makespan of heavy-tailed jobs on 4 devices, the local pool and Ray side by side.

400 fake jobs (lognormal engine times, median 20 ms, and a few long ones) are put straight into a
ledger as one chapter, then rendered by each executor with the synthetic engine (tests/plugins)
sleeping each job's own time: the local pool on 4 CPU worker processes, and Ray on 4 actors of
a local Ray started with 4 logical GPUs (one actor per GPU, as on a cluster). The makespan is
the first job's start to the last job's end (start-up and engine loads are not scheduling);
the bound no schedule can beat is max(total / 4, longest job). Printed per backend: makespan,
bound, their ratio (goal <= 1.05) and the dispatch overhead, the device time per job that went
to anything but the engine ((4 x makespan - total) / jobs).

    .venv/bin/python bench/makespan.py [--jobs 400] [--devices 4] [--median-ms 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from songbatch.engines.base import EngineSpec, JobRequest
from songbatch.events import RunEvent
from songbatch.executors.devices import parse_devices
from songbatch.executors.local import ExecutorSettings, LocalExecutor
from songbatch.executors.ray_backend import RayTransport
from songbatch.executors.transport import ProcessTransport
from songbatch.executors.worker import spec_id
from songbatch.ledger import JobRow, Ledger, ManifestRecord, PlanRow
from songbatch.profiles import RayConfig
from songbatch.scheduler import Backend, drive
from songbatch.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.plugins import use_test_plugins
from helpers.specs import bare_spec

SPEC = EngineSpec(kind="speech", engine="synthetic", model="tone", params={"latency_ms": 0})


def durations_ms(jobs: int, median_ms: float, seed: int) -> list[float]:
    """Lognormal (sigma 1: a long right tail), and 1 % of jobs 20x the median."""
    rng = random.Random(seed)
    times = [median_ms * rng.lognormvariate(0, 1) for _ in range(jobs)]
    for index in rng.sample(range(jobs), max(1, jobs // 100)):
        times[index] = 20 * median_ms
    return times


def fill_ledger(folder: Path, times: list[float]) -> int:
    jobs = [
        JobRow(
            f"{n:064x}",
            "speech",
            "synthetic",
            "tone",
            JobRequest("speech", f"job {n}", n, {"latency_ms": ms}),
            10,
            round(ms),  # est_ms: what the claim orders longest first by
        )
        for n, ms in enumerate(times)
    ]
    rows = [PlanRow(0, n, job.key, 0) for n, job in enumerate(jobs)]
    record = ManifestRecord("/bench.yaml", "audiobook", "B", "b", "s", "p", "x", bare_spec())
    with Ledger(folder / ".songbatch" / "ledger.db") as ledger:
        ledger.apply_plan(record, jobs, rows)
        manifest_id = ledger.manifest_id(record.path)
    assert manifest_id is not None
    return manifest_id


def measure(
    name: str, make: Callable[..., Backend], times: list[float], devices: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        workspace = Workspace(folder)
        workspace.make_state_dir()
        manifest_id = fill_ledger(folder, times)
        starts: list[float] = []
        ends: list[float] = []

        def observe(event: RunEvent) -> None:
            if event.kind == "job-started":
                starts.append(time.monotonic())
            elif event.kind == "job-done":
                ends.append(time.monotonic())

        with Ledger(workspace.ledger_path) as ledger:
            run_id = ledger.start_run(argv=["bench"])
            summary = drive([make(ledger, workspace, run_id, manifest_id, observe)])
        assert summary.published == len(times), summary
    makespan = max(ends) - min(starts)
    total = sum(times) / 1000
    bound = max(total / devices, max(times) / 1000)
    return {
        "backend": name,
        "makespan_s": makespan,
        "bound_s": bound,
        "ratio": makespan / bound,
        "overhead_ms": (devices * makespan - total) / len(times) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--median-ms", type=float, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    use_test_plugins()
    times = durations_ms(args.jobs, args.median_ms, args.seed)
    specs = {spec_id(SPEC.kind, SPEC.engine, SPEC.model): SPEC}
    settings = ExecutorSettings(lease_s=60)

    def local(ledger: Ledger, workspace: Workspace, run_id: int, mid: int, observe: Any) -> Backend:
        slots, _ = parse_devices(f"cpu:{args.devices}")
        return LocalExecutor(
            ledger, workspace, ProcessTransport(slots), specs, run_id=run_id, manifest_ids=[mid],
            settings=settings, observer=observe,
        )  # fmt: skip

    def on_ray(
        ledger: Ledger, workspace: Workspace, run_id: int, mid: int, observe: Any
    ) -> Backend:
        transport = RayTransport(RayConfig(actors=args.devices), "gpu")
        return LocalExecutor(
            ledger, workspace, transport, specs, run_id=run_id, manifest_ids=[mid],
            settings=settings, observer=observe,
        )  # fmt: skip

    import ray

    ray.init(num_cpus=args.devices, num_gpus=args.devices, include_dashboard=False,
             log_to_driver=False, object_store_memory=100 * 1024 * 1024)  # fmt: skip
    try:
        results = [measure("local", local, times, args.devices)]
        results.append(measure("ray", on_ray, times, args.devices))
    finally:
        ray.shutdown()
    total = sum(times) / 1000
    print(
        f"{args.jobs} jobs, {total:.2f} s of engine time (median {args.median_ms:g} ms, longest"
        f" {max(times):.0f} ms) on {args.devices} devices"
    )
    for row in results:
        print(
            f"  {row['backend']:<6} makespan {row['makespan_s']:.3f} s,"
            f" bound {row['bound_s']:.3f} s: ratio {row['ratio']:.3f} (goal <= 1.05);"
            f" dispatch overhead"
            f" {row['overhead_ms']:.2f} ms per job"
        )


if __name__ == "__main__":
    main()
