"""The Ray backend against a real Ray: a local one this module starts once, 2 CPUs and 2 logical
GPUs (Ray hands `num_gpus=1` actors distinct GPU ids on a machine with none), so per-GPU actors
run in CI. The CLI runs in-process; the actors are Ray's own worker processes."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Listener
from pathlib import Path
from typing import Any

import pytest

from helpers.books import book_manifest, synthetic_profile
from helpers.examples import REPO, example_book, invoke, render_offline
from helpers.verify import verify_done_exactly_once
from songbatch.ledger import Ledger

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # Started before any run: each run then finds Ray up and leaves it up (a run shuts down
    # only a Ray it started itself).
    ray.init(
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 1024 * 1024,
    )
    yield
    ray.shutdown()


def events_of(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stderr.splitlines()]


def chunks(workspace: Path) -> dict[str, str]:
    with Ledger(workspace / ".songbatch" / "ledger.db") as ledger:
        rows = ledger.conn.execute("SELECT key, sha256 FROM jobs WHERE state = 'done'")
        return {key: sha for key, sha in rows}


def attempts(workspace: Path) -> list[tuple[str, str | None, str | None]]:
    with Ledger(workspace / ".songbatch" / "ledger.db") as ledger:
        rows = ledger.conn.execute("SELECT job_key, outcome, worker FROM attempts")
        return [(key, outcome, worker) for key, outcome, worker in rows]


def test_the_example_book_renders_on_ray_actors_as_it_does_locally(tmp_path: Path) -> None:
    here, there = tmp_path / "local", tmp_path / "ray"
    render_offline(here, example_book(here, formats="[flac]"))
    book = example_book(there, formats="[flac]")
    result = invoke(
        "render",
        str(book),
        "--workspace",
        str(there),
        "--profile",
        "offline",
        "--backend",
        "ray",
        "--log-format",
        "json",
    )
    assert result.exit_code == 0, result.output
    # The same chunk files, byte for byte: the actors send the file's bytes, the driver writes
    # them, and neither changes what a local worker would have written.
    rendered = chunks(there)
    assert rendered == chunks(here) and len(rendered) == 20
    events = events_of(result)
    # The offline engine renders on CPUs: CPU actors, one per CPU of the cluster (2), each
    # ready once and loading its engine once for all its jobs.
    ready = Counter(e["worker"] for e in events if e["kind"] == "worker-ready")
    loaded = Counter(e["worker"] for e in events if e["kind"] == "engine-loaded")
    assert ready == loaded == {"ray-cpu0": 1, "ray-cpu1": 1}
    done = Counter(e["worker"] for e in events if e["kind"] == "job-done")
    assert set(done) == {"ray-cpu0", "ray-cpu1"} and sum(done.values()) == 20
    with Ledger(there / ".songbatch" / "ledger.db") as ledger:
        loads = ledger.conn.execute("SELECT engine, device FROM loads").fetchall()
    assert [tuple(row) for row in loads] == [("offline", "cpu")] * 2
    verify_done_exactly_once(there)


class Killer(threading.Thread):
    """Listens to the engines' announcements (tests/plugins: `announce`) and kills, by
    `ray.kill`, each new actor while its engine waits in its first render, `kills` times.

    Its first: an actor that dies just after finishing a call, its reply not yet back, took
    that call's result with it, and the driver charges that call (it never saw the next one
    start); the charge is then right but not the render this test killed. A job is killed
    twice at most: its failures stay under max_attempts (3), so every job still ends done."""

    def __init__(self, address: str, kills: int) -> None:
        super().__init__(daemon=True)
        self.listener = Listener(address, family="AF_UNIX")
        self.kills = kills
        self.killed: list[str] = []  # the job keys whose render was killed
        self.seen: list[dict[str, Any]] = []
        self.actors: set[str] = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while len(self.killed) < self.kills:
                with self.listener.accept() as conn:
                    said = conn.recv()
                    self.seen.append(said)
                    [key] = said["keys"]
                    first = said["actor"] not in self.actors
                    self.actors.add(said["actor"])
                    if self.killed.count(key) == 2 or not first:
                        conn.send("go on")
                        continue
                    ray.kill(ray.get_actor(said["actor"]), no_restart=True)
                    self.killed.append(key)
        except BaseException as exc:  # seen by the test, not lost in this thread
            self.error = exc
        finally:
            self.listener.close()  # later renders find no one listening and carry on


@pytest.mark.slow
def test_killed_actors_lose_exactly_their_attempts_and_every_job_is_done_once(
    tmp_path: Path,
) -> None:
    socket = tmp_path / "announce.sock"
    synthetic_profile(
        tmp_path,
        latency_ms=100,
        devices="auto",  # GPU actors: one per (logical) GPU
        params=f", announce: '{socket}'",
        extra="executor: ray\n",
    )
    manifest = book_manifest(tmp_path, chapters=2, sentences=6, formats="[flac]")
    killer = Killer(str(socket), kills=3)
    killer.start()
    try:
        result = invoke(
            "render", str(manifest), "--workspace", str(tmp_path), "--log-format", "json"
        )
    finally:
        killer.listener.close()  # a run that ended early must not leave the thread waiting
        killer.join(timeout=60)
    assert killer.error is None
    assert result.exit_code == 0, result.output
    assert len(killer.killed) == 3
    rows = attempts(tmp_path)
    # Exactly the three killed renders ended `lost`, each charged to its job and rendered
    # again; no other attempt was lost.
    lost = Counter(key for key, outcome, _ in rows if outcome == "lost")
    assert lost == Counter(killer.killed)
    verify_done_exactly_once(tmp_path)
    events = events_of(result)
    assert sum(e["kind"] == "worker-died" for e in events) == 3
    # Every attempt was written here, by the driver: leases by the coordinator, outcomes under
    # the actors' slot names; an actor never had the workspace to write to (its engine saw
    # its voice, if any, only as a file of its own node).
    assert {worker for _, _, worker in rows} <= {"coordinator", "ray-gpu0", "ray-gpu1"}
    assert {worker for _, outcome, worker in rows if outcome == "done"} <= {"ray-gpu0", "ray-gpu1"}
    workspace = str(tmp_path)
    assert not any(str(v).startswith(workspace) for said in killer.seen for v in said["voices"])
    # Each actor (a worker-ready) loaded its engine at most once before the next took its slot.
    per_slot: dict[str, list[str]] = {}
    for event in events:
        if event["kind"] in ("worker-ready", "engine-loaded"):
            per_slot.setdefault(event["worker"], []).append(event["kind"])
    for kinds in per_slot.values():
        text = " ".join(kinds)
        assert "engine-loaded engine-loaded" not in text and text.startswith("worker-ready")


def one_line_error(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_ray_run_that_cannot_start_says_why_in_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = str(example_book(tmp_path, formats="[flac]"))
    base = ("render", book, "--workspace", str(tmp_path), "--profile", "offline")
    one_line_error(invoke(*base, "--address", "auto"), "--backend ray")
    one_line_error(invoke(*base, "--backend", "ray", "--address", "head"), "--address", "ray://")
    one_line_error(invoke(*base, "--backend", "ray-cluster"), "expected local or ray")
    profile = tmp_path / "half.yaml"
    shipped = (REPO / "profiles" / "offline.yaml").read_text(encoding="utf-8")
    profile.write_text(shipped + "ray: {actors: 2}\n", encoding="utf-8")
    one_line_error(
        invoke("render", book, "--workspace", str(tmp_path), "--profile", str(profile)),
        "half.yaml",
        "executor: ray",
    )
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    one_line_error(invoke(*base, "--backend", "ray"), "songbatch[ray] is not installed")
    assert not (tmp_path / ".songbatch" / "ledger.db").exists()


@pytest.mark.timeout(120)
def test_a_run_that_asks_for_more_actors_than_fit_ends_when_its_jobs_are_done(
    tmp_path: Path,
) -> None:
    # The module's Ray has 2 CPUs: the third CPU actor waits for a node that never comes (an
    # autoscaler at its cap). The book still ends when the two that fit have rendered it.
    profile = tmp_path / "three.yaml"
    shipped = (REPO / "profiles" / "offline.yaml").read_text(encoding="utf-8")
    profile.write_text(shipped + "executor: ray\nray: {actors: 3}\n", encoding="utf-8")
    book = example_book(tmp_path, formats="[flac]")
    result = invoke(
        "render", str(book), "--workspace", str(tmp_path), "--profile", str(profile),
        "--log-format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ready = {e["worker"] for e in events_of(result) if e["kind"] == "worker-ready"}
    assert ready == {"ray-cpu0", "ray-cpu1"}
    verify_done_exactly_once(tmp_path)


def test_an_engine_load_longer_than_the_lease_is_not_taken_for_a_hung_render(
    tmp_path: Path,
) -> None:
    # A fresh node may spend minutes fetching weights before its first render. A worker
    # process reports its first job started once its engine has loaded; an actor's call
    # covers both, so the actor keeps beating while it loads.
    profile = synthetic_profile(
        tmp_path, latency_ms=20, devices="auto", params=", load_ms: 3500", extra="executor: ray\n"
    )
    text = profile.read_text(encoding="utf-8").replace("lease_seconds: 30", "lease_seconds: 2")
    profile.write_text(text, encoding="utf-8")
    manifest = book_manifest(tmp_path, chapters=1, sentences=4, formats="[flac]")
    result = invoke("render", str(manifest), "--workspace", str(tmp_path), "--log-format", "json")
    assert result.exit_code == 0, result.output
    assert not [e for e in events_of(result) if e["kind"] == "worker-died"]
    assert not [row for row in attempts(tmp_path) if row[1] == "lost"]
    verify_done_exactly_once(tmp_path)


def test_a_cluster_of_another_ray_version_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake for what cannot run here: a cluster of another Ray version. Ray Client refuses it
    # in ray.init with a RuntimeError (util/client: check_version_info), raised here as it is.
    def refuse(**options: Any) -> None:
        raise RuntimeError(
            "Version mismatch: The cluster was started with:\n    Ray: 2.52.0\n"
            "This process on Ray Client was started with:\n    Ray: 2.60.0"
        )

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    book = str(example_book(tmp_path, formats="[flac]"))
    result = invoke(
        "render", book, "--workspace", str(tmp_path), "--profile", "offline",
        "--backend", "ray", "--address", "ray://head.example:10001",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    [error] = [line for line in result.output.splitlines() if "error" in line]
    assert "ray://head.example:10001" in error and "Traceback" not in result.output
    assert "Version mismatch" in error and "Ray: 2.52.0" in error and "Ray: 2.60.0" in error
