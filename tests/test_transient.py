"""Transient is not permanent, on local workers: a fault of the machine (here a full disk, from
the synthetic engine while a marker file exists, standing in for a disk that a person frees) sets
jobs aside without charging them an attempt; they are tried again in the run, and those still
failing at its end stay pending for the next run, which takes them without `retry`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.books import book_manifest, run_songbatch, songbatch_command, synthetic_profile
from songbatch.cli.main import app
from songbatch.executors.worker import poisons
from songbatch.ledger import Ledger

runner = CliRunner()


def transient_attempts(workspace: Path) -> int:
    path = workspace / ".songbatch" / "ledger.db"
    if not path.exists():
        return 0
    with Ledger(path) as ledger:
        row = ledger.conn.execute(
            "SELECT COUNT(*) FROM attempts WHERE outcome = 'transient'"
        ).fetchone()
    return int(row[0])


def failures(workspace: Path) -> list[int]:
    with Ledger(workspace / ".songbatch" / "ledger.db") as ledger:
        return [row[0] for row in ledger.conn.execute("SELECT failures FROM jobs")]


def test_a_full_disk_sets_jobs_aside_uncharged_and_the_run_finishes_once_it_clears(
    tmp_path: Path,
) -> None:
    full = tmp_path / "disk-is-full"
    full.touch()
    synthetic_profile(
        tmp_path, latency_ms=1, devices="cpu:1", params=f", disk_full_while: '{full}'"
    )
    manifest = book_manifest(tmp_path, chapters=2, sentences=3, formats="[flac]")
    proc = subprocess.Popen(
        songbatch_command("render", str(manifest), "--workspace", str(tmp_path)),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # More transient faults than max_attempts (3) would allow if they were charged.
        deadline = time.monotonic() + 120
        while transient_attempts(tmp_path) < 4:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        full.unlink()  # the person frees the disk
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "No space left on device" in stderr
    assert failures(tmp_path) == [0] * 6
    assert len(list((tmp_path / "outputs" / "chaos-book").iterdir())) == 2


def test_jobs_still_failing_at_the_end_stay_pending_for_the_next_run_without_retry(
    tmp_path: Path,
) -> None:
    full = tmp_path / "disk-is-full"
    full.touch()
    synthetic_profile(
        tmp_path,
        latency_ms=1,
        devices="cpu:1",
        params=f", disk_full_while: '{full}'",
        extra="transient_patience_s: 0\n",
    )
    manifest = book_manifest(tmp_path, chapters=1, sentences=2, formats="[flac]")
    first = run_songbatch("render", str(manifest), "--workspace", str(tmp_path), cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert "transient: the next render tries it again" in first.stderr
    result: Any = runner.invoke(app, ["status", "--workspace", str(tmp_path), "--json"])
    [row] = json.loads(result.output)
    assert row["jobs"]["pending"] == 2 and row["jobs"]["failed"] == 0
    assert all("No space left" in item["error"] for item in row["set_aside"])
    assert failures(tmp_path) == [0, 0]
    full.unlink()
    second = run_songbatch("render", str(manifest), "--workspace", str(tmp_path), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "rendered 2 job(s)" in second.stderr


def test_a_sticky_device_error_replaces_the_worker_and_charges_no_job(tmp_path: Path) -> None:
    """A device-side assert (here raised by the synthetic engine, standing in for a GPU) leaves
    the CUDA context unusable: the worker reports its jobs set aside uncharged and exits, a
    fresh worker takes the device, and every other job renders. Before, the job was charged and
    the poisoned worker carried on failing every later job on that device."""
    synthetic_profile(
        tmp_path,
        latency_ms=1,
        devices="cpu:1",
        params=", device_assert_marker: ASSERT",
        extra="transient_patience_s: 0\n",
    )
    manifest = book_manifest(tmp_path, chapters=2, sentences=3, formats="[flac]")
    text = manifest.read_text(encoding="utf-8").replace("0-1.", "0-1 ASSERT.")
    manifest.write_text(text, encoding="utf-8")
    result = run_songbatch("render", str(manifest), "--workspace", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # one job left for the next run
    assert "worker-died" in result.stderr and "its device failed" in result.stderr
    assert "device-side assert" in result.stderr
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        states = dict(ledger.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
    assert states == {"done": 5, "pending": 1}
    assert failures(tmp_path) == [0] * 6
    # The chapter without the poisoned job was written; the other waits for it.
    assert [p.name for p in (tmp_path / "outputs" / "chaos-book").iterdir()] == [
        "02 - Chapter 2.flac"
    ]


@pytest.mark.parametrize(
    ("message", "sticky"),
    [
        ("CUDA error: device-side assert triggered", True),
        ("CUDA error: an illegal memory access was encountered", True),
        ("CUDA error: unspecified launch failure", True),
        ("CUDA out of memory. Tried to allocate 2.00 GiB", False),  # recoverable: transient
        ("synthetic failure: text contains 'POISON'", False),
    ],
)
def test_which_errors_poison_a_device(message: str, sticky: bool) -> None:
    assert poisons(RuntimeError(message)) is sticky
