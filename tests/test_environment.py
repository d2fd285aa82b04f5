"""The environment is checked before anything is written, and the commands that only look
(plan, status) never write: each refusal is one line, its documented exit code, and the ledger
byte for byte as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.books import book_manifest, synthetic_profile
from helpers.remote import remote_profile
from helpers.verify import state_bytes
from songbatch.cli.main import app
from songbatch.runlock import RunLock
from songbatch.workspace import resolve_workspace

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def assert_one_line(result: Any, code: int, *needles: str) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return str(lines[0])


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """A workspace with one small book rendered."""
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=1, sentences=2, formats="[flac]")
    result = invoke("render", str(manifest), "--workspace", str(tmp_path))
    assert result.exit_code == 0, result.output
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [["plan", "book.yaml"], ["status"], ["status", "book.yaml"], ["status", "--verify"]],
)
def test_plan_and_status_never_write_the_ledger(rendered: Path, command: list[str]) -> None:
    before = state_bytes(rendered)
    args = [str(rendered / a) if a.endswith(".yaml") else a for a in command]
    result = invoke(*args, "--workspace", str(rendered))
    assert result.exit_code == 0, result.output
    assert state_bytes(rendered) == before


def test_plan_and_status_never_migrate_an_older_ledger(rendered: Path) -> None:
    ledger = rendered / ".songbatch" / "ledger.db"
    with sqlite3.connect(ledger) as conn:  # as if written before the last migration
        last = conn.execute("SELECT max(rowid) FROM _sqlite_migrations").fetchone()[0]
        conn.execute("DELETE FROM _sqlite_migrations WHERE rowid = ?", (last,))
    conn.close()
    before = state_bytes(rendered)
    for args in (["status"], ["plan", str(rendered / "book.yaml")]):
        result = invoke(*args, "--workspace", str(rendered))
        assert_one_line(result, 2, "earlier songbatch", "songbatch render` upgrades it")
        assert state_bytes(rendered) == before


def test_status_and_retry_of_a_manifest_never_planned_say_so(rendered: Path) -> None:
    other = rendered / "other.yaml"
    other.write_text((rendered / "book.yaml").read_text(), encoding="utf-8")
    before = state_bytes(rendered)
    for command in ("status", "retry"):
        result = invoke(command, str(other), "--workspace", str(rendered))
        assert_one_line(result, 2, str(other), "never planned")
    assert state_bytes(rendered) == before


def test_status_of_a_manifest_in_a_workspace_with_no_ledger_says_so(tmp_path: Path) -> None:
    manifest = book_manifest(tmp_path, chapters=1, sentences=1)
    result = invoke("status", str(manifest), "--workspace", str(tmp_path / "empty"))
    assert_one_line(result, 2, "never planned")
    assert not (tmp_path / "empty").exists()


def test_retry_waits_for_no_render_it_takes_the_run_lock(rendered: Path) -> None:
    before = state_bytes(rendered)
    with RunLock(resolve_workspace(rendered).lock_path):
        result = invoke("retry", "--force", "--workspace", str(rendered))
        assert_one_line(result, 75, "another run holds")
    assert state_bytes(rendered) == before
    assert invoke("retry", "--force", "--workspace", str(rendered)).exit_code == 0


def two_books(tmp_path: Path, first: str, second: str) -> tuple[Path, Path]:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, profile in ((one, first), (two, second)):
        folder.mkdir()
        book_manifest(folder, chapters=1, sentences=1, formats="[flac]", profile=profile)
        text = (folder / "book.yaml").read_text().replace("Chaos Book", f"Book {folder.name}")
        (folder / "book.yaml").write_text(text, encoding="utf-8")
    return one / "book.yaml", two / "book.yaml"


def test_two_replicate_set_ups_in_one_run_are_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """One account's rate limit and spend caps are one limiter and one budget per run."""
    remote_profile(tmp_path)
    remote_profile(tmp_path, caps="  max_spend_per_day: 1.0\n", name="capped.yaml")
    one, two = two_books(tmp_path, str(tmp_path / "remote.yaml"), str(tmp_path / "capped.yaml"))
    workspace = tmp_path / "ws"
    result = invoke(
        "render",
        str(one),
        str(two),
        "--workspace",
        str(workspace),
        env={"REPLICATE_API_TOKEN": "r8"},
    )
    assert_one_line(result, 2, str(one), str(two), "different Replicate set-ups", "replicate")
    assert not workspace.exists()


def test_two_local_profiles_wanting_one_gpu_are_refused_unless_devices_are_given(
    tmp_path: Path,
) -> None:
    """A GPU renders one job at a time: two pools may not share it (CPU workers may)."""
    synthetic_profile(tmp_path, latency_ms=1, devices="0")
    (tmp_path / "other.yaml").write_text(
        (tmp_path / "synthetic.yaml").read_text().replace("'0'", "'0,1'"), encoding="utf-8"
    )
    one, two = two_books(tmp_path, str(tmp_path / "synthetic.yaml"), str(tmp_path / "other.yaml"))
    workspace = tmp_path / "ws"
    gpus = {"CUDA_VISIBLE_DEVICES": "0,1"}  # counted from the variable: no GPU is touched
    refused = invoke("render", str(one), str(two), "--workspace", str(workspace), env=gpus)
    assert_one_line(refused, 2, "both want cuda0", "(devices differ)", "--devices")
    assert not workspace.exists()
    chosen = invoke("render", str(one), str(two), "--workspace", str(workspace), "-d", "cpu:2")
    assert chosen.exit_code == 0, chosen.output


def test_two_local_profiles_on_cpus_render_side_by_side_in_one_run(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    (tmp_path / "other.yaml").write_text(
        (tmp_path / "synthetic.yaml").read_text().replace("cpu:1", "cpu:2"), encoding="utf-8"
    )
    one, two = two_books(tmp_path, str(tmp_path / "synthetic.yaml"), str(tmp_path / "other.yaml"))
    (two.parent / "book.yaml").write_text(two.read_text().replace(" 0-0.", " two."))
    result = invoke("render", str(one), str(two), "--workspace", str(tmp_path / "ws"))
    assert result.exit_code == 0, result.output
    # One pool per profile, their CPU workers numbered on: cpu0 is one's, cpu1 and cpu2 two's.
    ready = {line.split()[-1] for line in result.output.splitlines() if "worker-ready" in line}
    assert ready == {"cpu0", "cpu1"}, result.output


def test_one_engine_set_up_two_ways_in_one_run_is_refused(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    (tmp_path / "other.yaml").write_text(
        (tmp_path / "synthetic.yaml").read_text().replace("max_chars: 40", "max_chars: 80"),
        encoding="utf-8",
    )
    one, two = two_books(tmp_path, str(tmp_path / "synthetic.yaml"), str(tmp_path / "other.yaml"))
    result = invoke("render", str(one), str(two), "--workspace", str(tmp_path / "ws"))
    assert_one_line(result, 2, "speech engine synthetic model tone up differently")


@pytest.mark.parametrize(
    ("token", "args", "message"),
    [
        (None, [], "REPLICATE_API_TOKEN is not set"),
        ("  ", [], "REPLICATE_API_TOKEN is not set"),
        ("r8_x", ["--max-spend", "0"], "--max-spend 0 lets this run spend nothing"),
        ("r8_x", ["--max-spend", "nan"], "--max-spend nan: expected an amount"),
        ("r8_x", ["--max-spend", "-1"], "--max-spend -1.0: expected an amount"),
    ],
)
def test_a_remote_run_that_cannot_start_says_so_before_planning_and_offline(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    token: str | None,
    args: list[str],
    message: str,
) -> None:
    """No fake server runs and the base URL points nowhere: a network call would hang or fail
    differently."""
    remote_profile(tmp_path)
    manifest = book_manifest(tmp_path, chapters=1, sentences=1, profile="remote.yaml")
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9")
    if token is None:
        monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("REPLICATE_API_TOKEN", token)
    result = invoke("render", str(manifest), "--workspace", str(tmp_path / "ws"), *args)
    assert_one_line(result, 2, message)
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize(
    ("visible", "devices", "message"),
    [
        ("", "3", "--devices '3': no CUDA device is visible here"),
        ("0,1", "0,2", "--devices '0,2': there is no CUDA device 2"),
    ],
)
def test_devices_that_do_not_exist_are_exit_2(
    rendered: Path, monkeypatch: pytest.MonkeyPatch, visible: str, devices: str, message: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    before = state_bytes(rendered)
    result = invoke("render", str(rendered / "book.yaml"), "-w", str(rendered), "-d", devices)
    assert_one_line(result, 2, message)
    assert state_bytes(rendered) == before


def test_cpu_workers_are_capped_at_the_jobs_and_warned_past_the_cores(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=1, sentences=2, formats="[flac]")
    result = invoke("render", str(manifest), "--workspace", str(tmp_path), "-d", "cpu:200")
    assert result.exit_code == 0, result.output
    assert "more workers than the" in result.output
    assert "2 job(s) on 2 worker(s)" in result.output


@pytest.mark.parametrize("blocker", ["workspace", "state"])
def test_a_workspace_that_cannot_be_made_is_one_line_exit_2(tmp_path: Path, blocker: str) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=1, sentences=1, formats="[flac]")
    workspace = tmp_path / "ws"
    if blocker == "workspace":
        workspace.write_text("a file where the workspace should be")
    else:
        workspace.mkdir()
        (workspace / ".songbatch").write_text("a file where the state folder should be")
    result = invoke("render", str(manifest), "--workspace", str(workspace))
    if blocker == "workspace":  # the outputs' folder, in the workspace, is checked first
        assert_one_line(result, 2, f"{workspace} is not a folder")
    else:
        assert_one_line(result, 2, "cannot write the workspace", "--workspace")


@pytest.mark.parametrize(
    ("devices", "message"),
    [("gpu0", "expected auto, cpu, cpu:N"), ("cpu:0", "cpu:N needs N"), ("1,1", "named twice")],
)
def test_a_profile_devices_value_is_checked_as_it_loads(
    tmp_path: Path, devices: str, message: str
) -> None:
    profile = synthetic_profile(tmp_path, latency_ms=1, devices=devices)
    manifest = book_manifest(tmp_path, chapters=1, sentences=1)
    line = next(
        n for n, text in enumerate(profile.read_text().splitlines(), 1) if text.startswith("dev")
    )
    for command in ("plan", "render"):
        result = invoke(command, str(manifest), "--workspace", str(tmp_path / "ws"))
        assert_one_line(result, 2, f"{profile}:{line}:", "devices: ", message)
    assert not (tmp_path / "ws").exists()


def test_a_ledger_that_cannot_be_opened_is_one_line_exit_2(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=1, sentences=1, formats="[flac]")
    (tmp_path / ".songbatch" / "ledger.db").mkdir(parents=True)
    for command in (["render", str(manifest)], ["plan", str(manifest)], ["status"], ["retry"]):
        result = invoke(*command, "--workspace", str(tmp_path))
        assert_one_line(result, 2, "cannot open the ledger", "a folder is in its place")
