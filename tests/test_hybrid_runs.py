"""Hybrid runs: a local profile that spills to a Replicate profile (spill.py). The local engine
is the slow synthetic one (a plugin: no GPU here) and Replicate the real client against the fake
server on 127.0.0.1 (the API is paid). Which job went where, and why, is read back from the
ledger, the run summary and `status`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.books import book_manifest, synthetic_profile
from helpers.fake_replicate import FakeReplicate
from helpers.plugins import AddPlugin
from helpers.remote import remote_profile
from songbatch.cli.main import app

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def hybrid_profile(
    folder: Path,
    *,
    latency_ms: int,
    spill: str,
    params: str = "",
    max_attempts: int = 3,
) -> Path:
    """The synthetic engine on one CPU worker, spilling to `remote.yaml` beside it."""
    path = synthetic_profile(
        folder, latency_ms=latency_ms, devices="cpu:1", params=params, extra=f"spill: {spill}\n"
    )
    text = path.read_text().replace("max_attempts: 3", f"max_attempts: {max_attempts}")
    path.write_text(text, encoding="utf-8")
    return path


def ledger_rows(workspace: Path, sql: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{workspace / '.songbatch' / 'ledger.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute(sql)]
    finally:
        db.close()


def done_by_unit(workspace: Path) -> dict[int, set[str]]:
    """Each chapter: the workers that rendered its jobs."""
    rows = ledger_rows(
        workspace,
        "SELECT mj.unit, a.worker FROM attempts a JOIN manifest_jobs mj ON mj.job_key = a.job_key"
        " WHERE a.outcome = 'done'",
    )
    found: dict[int, set[str]] = {}
    for row in rows:
        found.setdefault(row["unit"], set()).add(row["worker"])
    return found


def run_summary(workspace: Path) -> dict[str, Any]:
    [path] = (workspace / ".songbatch" / "runs").glob("*.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def render_slow_book(tmp_path: Path, spill: str, time_limit: str) -> tuple[Any, int]:
    """Six chapters of two 1 s jobs on one local worker, with a time limit, into
    `tmp_path/ws`; the result and the predictions the fake Replicate saw."""
    profile = hybrid_profile(tmp_path, latency_ms=1000, spill=spill)
    book = book_manifest(tmp_path, chapters=6, sentences=2, formats="[flac]", profile=profile.name)
    workspace = tmp_path / "ws"
    with FakeReplicate(latency_s=0.3) as fake:
        result = invoke(
            "render",
            str(book),
            "--workspace",
            str(workspace),
            "--time-limit",
            time_limit,
            env=fake.env(),
        )
        return result, len(fake.state.predictions)


def test_a_slow_local_engine_that_cannot_meet_the_deadline_spills_whole_chapters(
    tmp_path: Path,
) -> None:
    remote_profile(tmp_path, poll_s=0.2, caps="  max_spend_per_run: 1.0")
    # 12 jobs of 1 s on one local worker do not fit in 8 s; the overflow goes remote.
    result, predictions = render_slow_book(tmp_path, "{to: remote.yaml}", "8s")
    workspace = tmp_path / "ws"
    assert result.exit_code == 0, result.output
    assert len(list((workspace / "outputs").rglob("*.flac"))) == 6
    by_unit = done_by_unit(workspace)
    assert len(by_unit) == 6
    # Whole chapters: each rendered by one backend alone.
    assert all(len(workers) == 1 for workers in by_unit.values()), by_unit
    remote_units = sorted(u for u, w in by_unit.items() if w == {"replicate"})
    assert remote_units and remote_units[-1] == 5, by_unit  # the tail went
    assert predictions == 2 * len(remote_units)
    routed = ledger_rows(workspace, "SELECT route, route_reason FROM jobs WHERE route IS NOT NULL")
    assert len(routed) == 2 * len(remote_units)
    assert {(r["route"], r["route_reason"]) for r in routed} == {("spill", "deadline")}
    summary = run_summary(workspace)
    assert summary["spilled"] == {"deadline": 2 * len(remote_units)}
    assert 0 < summary["spend_usd"] <= 1.0
    assert "spilled" in result.output and "deadline" in result.output
    status = invoke("status", "--workspace", str(workspace))
    assert f"spilled {2 * len(remote_units)}" in status.output, status.output


def poisoned_book(folder: Path, profile: Path, *, chapters: int, sentences: int) -> Path:
    """The last chapter's first sentence holds the synthetic engine's fail marker: it fails
    locally every time, for good."""
    book = book_manifest(
        folder, chapters=chapters, sentences=sentences, formats="[flac]", profile=profile.name
    )
    last = chapters - 1
    text = book.read_text().replace(f" {last}-0.", f" POISON {last}-0.")
    book.write_text(text, encoding="utf-8")
    return book


@pytest.mark.parametrize("mode", ["whole-chapters", "chunks"])
def test_a_job_that_fails_locally_goes_to_the_spill_over(tmp_path: Path, mode: str) -> None:
    remote_profile(tmp_path, poll_s=0.2, caps="  max_spend_per_run: 1.0")
    profile = hybrid_profile(
        tmp_path, latency_ms=20, spill=f"{{to: remote.yaml, mode: {mode}, after_failures: 1}}"
    )
    # One sentence in the poisoned chapter for whole chapters: it is untouched when it fails.
    sentences = 1 if mode == "whole-chapters" else 3
    book = poisoned_book(tmp_path, profile, chapters=2, sentences=sentences)
    workspace = tmp_path / "ws"
    with FakeReplicate(latency_s=0.2) as fake:
        result = invoke("render", str(book), "--workspace", str(workspace), env=fake.env())
        predictions = len(fake.state.predictions)
    assert result.exit_code == 0, result.output
    assert len(list((workspace / "outputs").rglob("*.flac"))) == 2
    assert predictions == 1  # the poisoned job alone
    [routed] = ledger_rows(workspace, "SELECT * FROM jobs WHERE route IS NOT NULL")
    assert routed["route_reason"] == "failures" and routed["state"] == "done"
    outcomes = ledger_rows(
        workspace, f"SELECT worker, outcome FROM attempts WHERE job_key = '{routed['key']}'"
    )
    assert [(a["worker"], a["outcome"]) for a in outcomes] == [
        ("cpu0", "failed"),
        ("replicate", "done"),
    ]
    if mode == "chunks":
        # The chapter mixes the two backends, as `chunks` allows.
        assert done_by_unit(workspace)[1] == {"cpu0", "replicate"}
    assert run_summary(workspace)["spilled"] == {"failures": 1}


def test_whole_chapters_keeps_a_started_chapter_on_one_voice_and_the_job_fails(
    tmp_path: Path,
) -> None:
    remote_profile(tmp_path, poll_s=0.2, caps="  max_spend_per_run: 1.0")
    profile = hybrid_profile(tmp_path, latency_ms=20, spill="{to: remote.yaml, after_failures: 1}")
    book = poisoned_book(tmp_path, profile, chapters=1, sentences=6)
    # Longest first: the poisoned chunk (the longest) is claimed first, so make it the shortest.
    text = book.read_text().replace("POISON", "P")
    book.write_text(text, encoding="utf-8")
    profile.write_text(profile.read_text().replace("fail_marker: POISON", "fail_marker: P 0-0"))
    workspace = tmp_path / "ws"
    with FakeReplicate(latency_s=0.2) as fake:
        result = invoke("render", str(book), "--workspace", str(workspace), env=fake.env())
        assert not fake.state.predictions
    assert result.exit_code == 1, result.output
    assert "synthetic failure" in result.output
    assert not ledger_rows(workspace, "SELECT key FROM jobs WHERE route IS NOT NULL")


UNAVAILABLE_ENTRY = """\
from songbatch.engines import EngineEntry
from songbatch_synthetic import SyntheticMusicParams, SyntheticSpeechParams

ENGINE = EngineEntry(
    "songbatch_synthetic.engine",
    requires=("songbatch_no_such_dependency",),
    params={"speech": SyntheticSpeechParams, "music": SyntheticMusicParams},
)
"""


def test_an_engine_no_local_device_can_run_spills_everything_it_renders(
    tmp_path: Path, add_plugin: AddPlugin
) -> None:
    add_plugin("needs-more", {"needs-more": "needs_more:ENGINE"}, {"needs_more": UNAVAILABLE_ENTRY})
    remote_profile(tmp_path, poll_s=0.2, caps="  max_spend_per_run: 1.0")
    profile = hybrid_profile(tmp_path, latency_ms=20, spill="{to: remote.yaml}")
    profile.write_text(profile.read_text().replace("engine: synthetic", "engine: needs-more", 1))
    book = book_manifest(tmp_path, chapters=2, sentences=2, formats="[flac]", profile=profile.name)
    workspace = tmp_path / "ws"
    with FakeReplicate(latency_s=0.2) as fake:
        result = invoke("render", str(book), "--workspace", str(workspace), env=fake.env())
        predictions = len(fake.state.predictions)
    assert result.exit_code == 0, result.output
    assert predictions == 4
    assert set().union(*done_by_unit(workspace).values()) == {"replicate"}
    assert run_summary(workspace)["spilled"] == {"unavailable": 4}
    # Without a spill the same engine is refused before anything is written.
    profile.write_text(profile.read_text().replace("spill: {to: remote.yaml}\n", ""))
    again = invoke("render", str(book), "--workspace", str(tmp_path / "ws2"))
    assert again.exit_code == 2 and "songbatch_no_such_dependency" in again.output


def test_the_spill_stays_within_its_budget_and_the_rest_waits(tmp_path: Path) -> None:
    # Each job is reserved at 3 x (1 + 0.5 x its 2.2 s of audio) + 2 s of grace, x $0.001/s:
    # $0.0083; $0.02 covers one chapter of two jobs, not two.
    remote_profile(tmp_path, poll_s=0.2)
    result, _ = render_slow_book(tmp_path, "{to: remote.yaml, max_spend: 0.02}", "6s")
    workspace = tmp_path / "ws"
    routed = ledger_rows(workspace, "SELECT key FROM jobs WHERE route = 'spill'")
    assert len(routed) == 2, result.output
    summary = run_summary(workspace)
    assert 0 < summary["spend_usd"] <= 0.02
    assert result.exit_code == 4, result.output  # the local devices ran out of time


def test_a_spill_needs_a_remote_profile_and_a_budget(tmp_path: Path) -> None:
    remote_profile(tmp_path)
    profile = hybrid_profile(tmp_path, latency_ms=20, spill="{to: remote.yaml}")
    book = book_manifest(tmp_path, chapters=1, sentences=1, formats="[flac]", profile=profile.name)
    result = invoke("render", str(book), "--workspace", str(tmp_path / "ws"))
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert "synthetic.yaml" in line and "spill.to" in line and "budget" in line, line
    assert not (tmp_path / "ws" / ".songbatch" / "ledger.db").exists()
    (tmp_path / "other").mkdir()
    synthetic_profile(tmp_path / "other", latency_ms=20)
    profile.write_text(profile.read_text().replace("to: remote.yaml", "to: other/synthetic.yaml"))
    result = invoke("render", str(book), "--workspace", str(tmp_path / "ws"))
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert "spill.to" in line and "renders locally" in line, line


def test_a_remote_profile_with_a_spill_is_refused_at_its_line(tmp_path: Path) -> None:
    path = remote_profile(tmp_path)
    path.write_text(path.read_text() + "spill: {to: remote.yaml}\n", encoding="utf-8")
    line_no = path.read_text().splitlines().index("spill: {to: remote.yaml}") + 1
    book = book_manifest(tmp_path, chapters=1, sentences=1, formats="[flac]", profile=path.name)
    result = invoke("render", str(book), "--workspace", str(tmp_path / "ws"))
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert f"remote.yaml:{line_no}" in line and "nothing to spill" in line, line


NO_WEIGHTS_ENTRY = """\
from songbatch.engines import EngineEntry
from songbatch_synthetic import SyntheticMusicParams, SyntheticSpeechParams

ENGINE = EngineEntry(
    "no_weights_impl",
    params={"speech": SyntheticSpeechParams, "music": SyntheticMusicParams},
)
"""

NO_WEIGHTS_IMPL = """\
from songbatch.errors import EngineUnavailable

def load(spec, device):
    raise EngineUnavailable("no weights for this model in the hub cache")
"""


def test_an_engine_that_does_not_load_on_the_device_spills_its_jobs(
    tmp_path: Path, add_plugin: AddPlugin
) -> None:
    """It imports, so only a worker finds out: its jobs go across, none is charged."""
    add_plugin(
        "no-weights",
        {"no-weights": "no_weights:ENGINE"},
        {"no_weights": NO_WEIGHTS_ENTRY, "no_weights_impl": NO_WEIGHTS_IMPL},
    )
    remote_profile(tmp_path, poll_s=0.2, caps="  max_spend_per_run: 1.0")
    profile = hybrid_profile(tmp_path, latency_ms=20, spill="{to: remote.yaml}")
    profile.write_text(profile.read_text().replace("engine: synthetic", "engine: no-weights", 1))
    book = book_manifest(tmp_path, chapters=2, sentences=2, formats="[flac]", profile=profile.name)
    workspace = tmp_path / "ws"
    with FakeReplicate(latency_s=0.2) as fake:
        result = invoke("render", str(book), "--workspace", str(workspace), env=fake.env())
        predictions = len(fake.state.predictions)
    assert result.exit_code == 0, result.output
    assert predictions == 4
    assert run_summary(workspace)["spilled"] == {"unavailable": 4}
    assert not ledger_rows(workspace, "SELECT key FROM jobs WHERE failures > 0")
    assert "did not load" in result.output
    profile.write_text(profile.read_text().replace("spill: {to: remote.yaml}\n", ""))
    again = invoke("render", str(book), "--workspace", str(tmp_path / "ws2"))
    assert again.exit_code == 2 and "no weights" in again.output
