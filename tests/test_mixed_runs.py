"""One run, several backends: manifests on different profiles render together, under one lock
and one summary, the local pool and Replicate (the real client against the fake server on
127.0.0.1: the API is paid) driven by one loop at the same time. What one run cannot drive is
refused before anything is written."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.books import book_manifest, songbatch_command, synthetic_profile
from helpers.fake_replicate import FakeReplicate
from helpers.remote import remote_profile
from songbatch.cli.main import app

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def one_line(result: Any, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def book_in(folder: Path, profile: Path, *, chapters: int, sentences: int) -> Path:
    folder.mkdir()
    path = book_manifest(
        folder, chapters=chapters, sentences=sentences, formats="[flac]", profile=str(profile)
    )
    text = path.read_text().replace("Chaos Book", f"Book {folder.name}")
    path.write_text(text, encoding="utf-8")
    return path


def attempts(workspace: Path) -> list[dict[str, Any]]:
    db = read_only(workspace)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute(
            "SELECT a.*, mj.manifest_id FROM attempts a"
            " JOIN (SELECT DISTINCT job_key, manifest_id FROM manifest_jobs) mj"
            " ON mj.job_key = a.job_key"
        ).fetchall()
        return [dict(row) for row in rows]
    finally:
        db.close()


def read_only(workspace: Path) -> sqlite3.Connection:
    """Never creates the ledger: the run under test does."""
    return sqlite3.connect(f"file:{workspace / '.songbatch' / 'ledger.db'}?mode=ro", uri=True)


def epoch(utc: str) -> float:
    return datetime.fromisoformat(utc.replace("Z", "+00:00")).timestamp()


def test_a_local_book_and_a_replicate_book_render_in_one_run_at_once(tmp_path: Path) -> None:
    local = synthetic_profile(tmp_path, latency_ms=100, devices="cpu:1")
    remote = remote_profile(tmp_path, poll_s=0.2)
    mine = book_in(tmp_path / "local", local, chapters=3, sentences=4)
    theirs = book_in(tmp_path / "remote", remote, chapters=1, sentences=4)
    workspace = tmp_path / "ws"
    with FakeReplicate(latency_s=0.5) as fake:
        result = invoke(
            "render", str(mine), str(theirs), "--workspace", str(workspace), env=fake.env()
        )
        assert result.exit_code == 0, result.output
        created = sorted(p.created for p in fake.state.predictions.values())
    assert len(created) == 4
    for folder, chapters in (("local", 3), ("remote", 1)):
        files = sorted(p.name for p in (workspace / "outputs" / f"book-{folder}").glob("*.flac"))
        assert len(files) == chapters, files
    rows = attempts(workspace)
    by_worker = {row["worker"] for row in rows if row["outcome"] == "done"}
    assert by_worker == {"cpu0", "replicate"}
    local_ends = [epoch(r["finished_utc"]) for r in rows if r["worker"] == "cpu0"]
    # At once, not one after the other: Replicate had created its predictions before the
    # local worker (spawned, loaded, 12 jobs of 0.1 s) finished its last job.
    assert created[0] < max(local_ends)
    [summary] = (workspace / ".songbatch" / "runs").glob("*.json")
    data = json.loads(summary.read_text())
    assert data["exit_code"] == 0 and len(data["manifests"]) == 2


@pytest.mark.skipif(os.name == "nt", reason="signals")
def test_sigterm_in_a_mixed_run_stops_both_backends_and_gives_every_lease_back(
    tmp_path: Path,
) -> None:
    """A process must die here, so the CLI runs as one (songbatch_command)."""
    local = synthetic_profile(tmp_path, latency_ms=3000, devices="cpu:1")
    remote = remote_profile(tmp_path, poll_s=0.2)
    mine = book_in(tmp_path / "local", local, chapters=1, sentences=3)
    theirs = book_in(tmp_path / "remote", remote, chapters=1, sentences=3)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with FakeReplicate(latency_s=60.0) as fake:
        proc = subprocess.Popen(
            songbatch_command("render", str(mine), str(theirs), "--workspace", str(workspace)),
            cwd=workspace,
            env={**os.environ, **fake.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        # Both at work: every prediction created and polled, the local worker rendering.
        wait_for(lambda: len(fake.state.predictions) == 3 and fake.state.gets >= 3)
        wait_for(lambda: any(r["worker"] == "cpu0" for r in attempts(workspace)))
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert fake.state.cancels == 3
    rows = attempts(workspace)
    assert all(row["finished_utc"] for row in rows), rows
    assert {row["outcome"] for row in rows} <= {"done", "interrupted"}
    db = read_only(workspace)
    try:
        states = {state for (state,) in db.execute("SELECT state FROM jobs")}
    finally:
        db.close()
    assert "leased" not in states


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Polls what only another process can change (its ledger, the fake's state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")
