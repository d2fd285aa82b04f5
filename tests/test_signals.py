"""Stop signals in every phase, and workers that never outlive their coordinator.

These run `songbatch` as a real process (signals have to reach a process; pytest's own must not
be touched). A pause point (`SONGBATCH_PAUSE_AT`) holds the run in the phase under test and
writes a marker file, so each test waits on that event, never on a sleep guessed long enough.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from helpers.books import book_manifest, songbatch_command, synthetic_profile, worker_processes
from helpers.verify import temp_files
from songbatch.executors.worker import watch_lifeline
from songbatch.ledger import Ledger

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


def start(workspace: Path, manifest: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        songbatch_command("render", str(manifest), "--workspace", str(workspace)),
        cwd=workspace,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def paused_run(tmp_path: Path, phase: str, formats: str = "[flac]") -> subprocess.Popen[str]:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=2, sentences=2, formats=formats)
    marker = tmp_path / "paused"
    proc = start(
        tmp_path,
        manifest,
        SONGBATCH_PAUSE_AT=phase,
        SONGBATCH_PAUSE_FILE=str(marker),
    )
    wait_for(lambda: marker.exists() or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()
    return proc


def run_rows(workspace: Path) -> list[tuple[int, int | None]]:
    ledger_path = workspace / ".songbatch" / "ledger.db"
    if not ledger_path.exists():
        return []
    with Ledger(ledger_path) as ledger:
        return [(row[0], row[1]) for row in ledger.conn.execute("SELECT id, exit_code FROM runs")]


@pytest.mark.parametrize(
    ("phase", "formats", "sig"),
    [
        ("imports", "[flac]", signal.SIGTERM),
        ("imports", "[flac]", signal.SIGINT),
        ("planning", "[flac]", signal.SIGHUP),
        ("rendering", "[flac]", signal.SIGTERM),
        ("rendering", "[flac]", signal.SIGHUP),
        ("assembly", "[flac]", signal.SIGTERM),  # a chapter, in the assembly thread
        ("assembly", "[flac]", signal.SIGHUP),
        ("assembly", "[m4b]", signal.SIGTERM),  # the book, in the main thread
        ("assembly", "[m4b]", signal.SIGINT),
    ],
)
def test_a_stop_signal_in_any_phase_is_exit_130_with_nothing_left_behind(
    tmp_path: Path, phase: str, formats: str, sig: signal.Signals
) -> None:
    proc = paused_run(tmp_path, phase, formats)
    if phase == "assembly":
        assert temp_files(tmp_path / "outputs"), "the pause holds an encode's temp file"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    assert "interrupted" in stderr
    assert temp_files(tmp_path / ".songbatch", tmp_path / "outputs") == []
    rows = run_rows(tmp_path)
    if phase in ("rendering", "assembly"):
        assert rows == [(1, 130)]
    else:
        assert rows == []  # stopped before the run began: nothing was written
    if phase == "assembly":
        again = start(tmp_path, tmp_path / "book.yaml")
        _, stderr = again.communicate(timeout=120)
        assert again.returncode == 0, stderr
        assert "rendered 0 job(s)" in stderr  # finished work was kept


def test_a_signal_just_after_a_claim_gives_those_leases_back(tmp_path: Path) -> None:
    """The claim has committed and its leases are not yet in the executor's pool: the stop path
    must find them in the ledger (seen in CI as jobs left leased after a SIGTERM)."""
    proc = paused_run(tmp_path, "claimed")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        states = [row[0] for row in ledger.conn.execute("SELECT state FROM jobs")]
        failures = {row[0] for row in ledger.conn.execute("SELECT failures FROM jobs")}
        open_attempts = ledger.conn.execute(
            "SELECT count(*) FROM attempts WHERE finished_utc IS NULL"
        ).fetchone()[0]
    assert states and set(states) == {"pending"}
    assert failures == {0} and open_attempts == 0


def test_workers_never_outlive_a_coordinator_killed_alone(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=60_000, devices="cpu:2")
    manifest = book_manifest(tmp_path, chapters=2, sentences=4, formats="[flac]")
    proc = start(tmp_path, manifest)
    wait_for(lambda: len(worker_processes(proc.pid)) == 2)
    workers = worker_processes(proc.pid)
    # Rendering: each is busy in the engine, not waiting on its pipe.
    wait_for(lambda: (tmp_path / ".songbatch" / "ledger.db").exists())
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)  # the coordinator alone, not its process group
    proc.communicate(timeout=30)
    # Within a few seconds, long before the 60 s render a busy worker is in would end.
    wait_for(lambda: not any(_alive(worker) for worker in workers), timeout=10)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _child_that_waits(lifeline: object) -> None:
    watch_lifeline(lifeline)  # type: ignore[arg-type]
    time.sleep(600)


def test_the_lifeline_ends_a_worker_without_the_parent_death_signal() -> None:
    """The portable half on its own: no prctl here, only the pipe only the parent holds."""
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_child_that_waits, args=(reader,), daemon=True)
    child.start()
    reader.close()
    assert child.is_alive()
    writer.close()  # what the kernel does when the parent dies
    child.join(timeout=20)
    assert child.exitcode == 1
