"""What the screen says about a run agrees with what it does and with the ledger: plan and
status give one estimate, a run announces the jobs it will render, and audio sent back by
`retry --force` no longer counts as rendered."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from helpers.books import book_manifest, synthetic_profile
from songbatch.cli.main import app

runner = CliRunner()


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def as_json(*args: str) -> Any:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_plan_and_status_give_one_estimate(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=2, sentences=3, formats="[flac]")
    [planned] = as_json("plan", str(manifest), "--workspace", str(tmp_path))
    assert invoke("render", str(manifest), "--workspace", str(tmp_path)).exit_code == 0
    [status] = as_json("status", "--workspace", str(tmp_path))
    [again] = as_json("plan", str(manifest), "--workspace", str(tmp_path))
    # Pauses between chunks and chapters are part of how long the book plays.
    assert planned["est_ms"] == status["est_ms"] == again["est_ms"]
    assert status["rendered_ms"] > 0


def test_audio_sent_back_by_a_forced_retry_is_not_rendered_any_more(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=1, sentences=2, formats="[flac]")
    assert invoke("render", str(manifest), "--workspace", str(tmp_path)).exit_code == 0
    assert invoke("retry", "--force", "--workspace", str(tmp_path)).exit_code == 0
    [status] = as_json("status", "--workspace", str(tmp_path))
    assert status["jobs"]["pending"] == 2 and status["rendered_ms"] == 0


def test_a_run_announces_the_jobs_it_renders_a_repeated_sentence_once(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:4")
    manifest = tmp_path / "book.yaml"
    manifest.write_text(
        "kind: audiobook\ntitle: Echoes\nauthor: A\nprofile: synthetic.yaml\nformats: [flac]\n"
        "speak_titles: false\nchapters:\n"
        '  - {title: One, text: "Come back here at once.\\n\\nCome back here at once."}\n'
        '  - {title: Two, text: "Come back here at once.\\n\\nNo."}\n',
        encoding="utf-8",
    )
    result = invoke("render", str(manifest), "--workspace", str(tmp_path))
    assert result.exit_code == 0, result.output
    announced = re.search(r"run-started (\d+) job\(s\) on (\d+) worker\(s\)", result.output)
    assert announced is not None, result.output
    assert announced.groups() == ("2", "2"), "two distinct sentences, so two workers"
    assert "rendered 2 job(s)" in result.output
