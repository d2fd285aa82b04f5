"""Run-level behaviour: a failing job fails alone, retry, the time limit, SIGTERM, exit codes.

These use the synthetic engine (fixed latency; fails for good on text containing POISON), so the
behaviour under test is the executor's, not a model's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers.books import (
    album_manifest,
    book_manifest,
    run_songbatch,
    start_render,
    synthetic_profile,
)
from helpers.verify import temp_files
from songbatch.ledger import Ledger


def render(workspace: Path, manifest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_songbatch(
        "render", str(manifest), "--workspace", str(workspace), *extra, cwd=workspace
    )


def poison(manifest: Path, chapter: int) -> None:
    text = manifest.read_text(encoding="utf-8")
    marker = f"Night fell without a sound {chapter}-9."
    assert marker in text
    manifest.write_text(text.replace(marker, f"POISON {chapter}-9."), encoding="utf-8")


def status(workspace: Path) -> dict[str, int]:
    result = run_songbatch("status", "--json", "--workspace", str(workspace), cwd=workspace)
    [row] = json.loads(result.stdout)
    return dict(row["jobs"])


def test_a_failing_job_fails_alone_and_retry_brings_it_back(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=5, devices="cpu:2")
    manifest = book_manifest(tmp_path, chapters=3, sentences=10, formats="[flac, m4b]")
    poison(manifest, 1)
    first = render(tmp_path, manifest)
    assert first.returncode == 1, first.stderr
    assert "synthetic failure" in first.stderr
    assert status(tmp_path) == {"pending": 0, "leased": 0, "done": 29, "failed": 1}
    outputs = sorted(p.name for p in (tmp_path / "outputs" / "chaos-book").iterdir())
    # Chapters 1 and 3 are finished and published; chapter 2 and the book wait for the job.
    assert outputs == ["01 - Chapter 1.flac", "03 - Chapter 3.flac"]
    retried = run_songbatch("retry", "--workspace", str(tmp_path), cwd=tmp_path)
    assert retried.returncode == 0 and "1 job(s) back to pending" in retried.stdout
    assert status(tmp_path)["pending"] == 1
    manifest.write_text(
        manifest.read_text(encoding="utf-8").replace("POISON", "Calm"), encoding="utf-8"
    )
    fixed = render(tmp_path, manifest)
    assert fixed.returncode == 0, fixed.stderr
    assert "rendered 1 job(s)" in fixed.stderr
    names = sorted(p.name for p in (tmp_path / "outputs" / "chaos-book").iterdir())
    assert names == [
        "01 - Chapter 1.flac",
        "02 - Chapter 2.flac",
        "03 - Chapter 3.flac",
        "Chaos Book.m4b",
    ]


def test_forced_retry_renders_done_jobs_again_and_is_recorded(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=1, sentences=3, formats="[flac]")
    assert render(tmp_path, manifest).returncode == 0
    forced = run_songbatch("retry", "--force", "--workspace", str(tmp_path), cwd=tmp_path)
    assert "3 job(s) back to pending (forced)" in forced.stdout
    again = render(tmp_path, manifest)
    assert again.returncode == 0 and "rendered 3 job(s)" in again.stderr
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        kinds = [row[0] for row in ledger.conn.execute("SELECT kind FROM events")]
    assert kinds.count("retry-forced") == 3


def test_the_time_limit_stops_with_exit_4_and_the_next_run_finishes(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=200, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=2, sentences=10, formats="[flac]")
    stopped = render(tmp_path, manifest, "--time-limit", "2s")
    assert stopped.returncode == 4, stopped.stderr
    assert "time limit" in stopped.stderr
    left = status(tmp_path)
    assert left["pending"] > 0 and left["leased"] == 0 and left["done"] > 0
    assert temp_files(tmp_path / ".songbatch") == []
    assert render(tmp_path, manifest).returncode == 0
    assert status(tmp_path)["done"] == 20


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM")
def test_sigterm_gives_leases_back_and_keeps_finished_work(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=300, devices="cpu:2")
    manifest = book_manifest(tmp_path, chapters=2, sentences=10, formats="[flac]")
    proc = start_render(tmp_path, manifest)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if (tmp_path / ".songbatch" / "chunks").exists():
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    left = status(tmp_path)
    assert left["leased"] == 0 and left["done"] > 0 and left["pending"] > 0
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        failures = {row[0] for row in ledger.conn.execute("SELECT failures FROM jobs")}
    assert failures == {0}, "an interruption is not the jobs' fault"
    assert render(tmp_path, manifest).returncode == 0
    assert status(tmp_path)["done"] == 20


def test_an_engine_that_is_not_installed_is_one_line_exit_2(tmp_path: Path) -> None:
    profile = tmp_path / "missing.yaml"
    profile.write_text(
        "name: missing\n"
        "speech: {engine: nosuchengine, model: m}\n"
        "music: {engine: nosuchengine, model: m}\n"
        "devices: cpu\n",
        encoding="utf-8",
    )
    manifest = book_manifest(tmp_path, chapters=1, sentences=2, profile="missing.yaml")
    result = render(tmp_path, manifest)
    assert result.returncode == 2, result.stderr
    assert "speech engine 'nosuchengine' is unknown" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".songbatch").exists()


def test_a_deleted_chunk_file_is_rendered_again(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=1, sentences=3, formats="[flac]")
    assert render(tmp_path, manifest).returncode == 0
    chunks = sorted((tmp_path / ".songbatch" / "chunks").rglob("*.flac"))
    chunks[0].unlink()
    again = render(tmp_path, manifest)
    assert again.returncode == 0, again.stderr
    assert "1 rendered chunk(s) missing: rendering again" in again.stderr
    assert "rendered 1 job(s)" in again.stderr
    assert chunks[0].exists()


def synthetic_album(folder: Path, tracks: list[tuple[str, str]]) -> Path:
    """An album of (prompt, duration) tracks on the synthetic profile."""
    return album_manifest(folder, tracks, profile="synthetic.yaml", title="Batch Album")


def auto_batch_profile(folder: Path, params: str) -> None:
    """A one-device synthetic profile whose music engine has `batch_size: auto` and `params`."""
    profile = synthetic_profile(folder, latency_ms=50, devices="cpu:1")
    profile.write_text(
        profile.read_text(encoding="utf-8")
        .replace(
            "music:\n  engine: synthetic\n",
            "music:\n  engine: synthetic\n  batch_size: auto\n",
        )
        .replace("params: {", f"params: {{{params}, ", 2),
        encoding="utf-8",
    )


def test_auto_batch_size_follows_what_the_loaded_engine_reports(tmp_path: Path) -> None:
    """`batch_size: auto`: the first calls carry one job each (they load the engine, which
    measures its device); after the worker reports its limit, batches are that big. The
    synthetic engine stands in for a GPU's free memory with `auto_batch_limit`."""
    auto_batch_profile(tmp_path, "auto_batch_limit: 3")
    tracks = [(f"calm piano {i}", "3s") for i in range(7)]
    result = render(tmp_path, synthetic_album(tmp_path, tracks))
    assert result.returncode == 0, result.stderr
    assert "up to 3 job(s) per call" in result.stderr
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        infos = [json.loads(row[0]) for row in ledger.conn.execute("SELECT info FROM jobs")]
    # One single-job call loads the engine; the rest wait for the size it reports (kept two
    # deep from the start, a second one-job call would have gone out: 1, 1, 3, 2).
    assert sorted(info["batch"] for info in infos) == [1, 3, 3, 3, 3, 3, 3]


def test_a_batch_limit_the_engine_raises_after_a_call_sizes_the_next_calls(
    tmp_path: Path,
) -> None:
    """MusicGen with `auto` on CUDA measures a peak under its model after a call and can hold
    more: the worker reports the new limit and later calls carry that many. The synthetic
    engine stands in: 2 at load, 4 after its first call."""
    auto_batch_profile(tmp_path, "auto_batch_limit: 2, auto_batch_limit_after: 4")
    tracks = [(f"calm piano {i}", "3s") for i in range(11)]
    result = render(tmp_path, synthetic_album(tmp_path, tracks))
    assert result.returncode == 0, result.stderr
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        infos = [json.loads(row[0]) for row in ledger.conn.execute("SELECT info FROM jobs")]
    batches = sorted(info["batch"] for info in infos)
    assert batches.count(4) >= 8, batches  # at most one call of 1 and one of 2 before the report


def test_speech_chunks_of_any_length_share_a_call(tmp_path: Path) -> None:
    """Speech engines that batch (Chatterbox pads its rows) get chunks of different lengths
    together; music is held to equal lengths (the test below)."""
    profile = synthetic_profile(tmp_path, latency_ms=20, devices="cpu:1")
    profile.write_text(
        profile.read_text(encoding="utf-8").replace(
            "speech:\n  engine: synthetic\n", "speech:\n  engine: synthetic\n  batch_size: 4\n"
        ),
        encoding="utf-8",
    )
    manifest = book_manifest(tmp_path, chapters=1, sentences=8)
    result = render(tmp_path, manifest)
    assert result.returncode == 0, result.stderr
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        rows = ledger.conn.execute("SELECT est_ms, info FROM jobs").fetchall()
    assert len({row[0] for row in rows}) > 1  # the chunks are of different lengths
    assert sorted(json.loads(row[1])["batch"] for row in rows) == [4] * 8


def test_equal_length_tracks_share_one_engine_call_and_fail_alone(tmp_path: Path) -> None:
    profile = synthetic_profile(tmp_path, latency_ms=50, devices="cpu:1")
    profile.write_text(
        profile.read_text(encoding="utf-8").replace(
            "music:\n  engine: synthetic\n", "music:\n  engine: synthetic\n  batch_size: 3\n"
        ),
        encoding="utf-8",
    )
    tracks = [("calm piano", "4s")] * 2 + [("POISON drums", "4s")] + [("warm strings", "2s")] * 2
    tracks = [(f"{prompt} {i}", duration) for i, (prompt, duration) in enumerate(tracks)]
    manifest = synthetic_album(tmp_path, tracks)
    result = render(tmp_path, manifest)
    assert result.returncode == 1, result.stderr  # the poisoned track fails, alone
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        rows = ledger.conn.execute(
            "SELECT est_ms, state, info FROM jobs ORDER BY est_ms"
        ).fetchall()
    batches = [(row[0], row[1], json.loads(row[2])["batch"] if row[2] else None) for row in rows]
    # Longest first: the three 4 s tracks went together, then the two 2 s ones.
    assert batches == [
        (2000, "done", 2),
        (2000, "done", 2),
        (4000, "done", 3),
        (4000, "done", 3),
        (4000, "failed", None),
    ]
