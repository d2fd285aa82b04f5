"""The command line as a person meets it: one-line errors with exit codes, nothing written on bad
input, plan as a dry run, status and retry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from songbatch.cli.main import app, parse_span
from songbatch.errors import InputError
from songbatch.ledger import Ledger
from songbatch.planner import commit_plan
from songbatch.render import load_all
from songbatch.workspace import resolve_workspace
from songbatch.yamlstrict import load_yaml

REPO = Path(__file__).resolve().parents[1]
BAD_INPUTS = Path(__file__).resolve().parent / "bad_inputs"
CASES: list[dict[str, Any]] = load_yaml(BAD_INPUTS / "cases.yaml").data["cases"]
EXAMPLE_BOOK = REPO / "manifests" / "example-book.yaml"

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def seeded_workspace(tmp_path: Path) -> Path:
    """A workspace whose ledger already holds a plan, so 'unchanged' means something."""
    workspace = tmp_path / "ws"
    result = invoke("plan", str(EXAMPLE_BOOK), "--workspace", str(workspace))
    assert result.exit_code == 0
    assert not (workspace / ".songbatch").exists(), "plan is a dry run"
    ws = resolve_workspace(workspace)
    with Ledger(ws.ledger_path) as ledger:
        for item in load_all([EXAMPLE_BOOK], None, ws):
            commit_plan(ledger, item.plan, ws)
        ledger.start_run(["seed"])
        assert ledger.state_counts()
    return workspace


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_the_ledger_is_untouched(
    case: dict[str, Any], tmp_path: Path, seeded_workspace: Path
) -> None:
    state = seeded_workspace / ".songbatch"
    before = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    if case.get("unreadable"):
        folder, exit_code, output = _render_unreadable(case, seeded_workspace)
    else:
        folder = tmp_path / case["case"]
        shutil.copytree(BAD_INPUTS / case["case"], folder)
        result = invoke(
            "render", str(folder / "manifest.yaml"), "--workspace", str(seeded_workspace)
        )
        exit_code, output = result.exit_code, result.output
    assert exit_code == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    where = f"{folder / 'manifest.yaml'}:{case['line']}:{case['col']}: "
    assert lines[0].startswith(f"songbatch: error: {where}")
    if case["field"]:
        assert f": {case['field']}: " in lines[0]
    assert case["message"] in lines[0]
    assert "Traceback" not in output
    after = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    assert after == before


def _render_unreadable(case: dict[str, Any], workspace: Path) -> tuple[Path, int, str]:
    """chmod 000 stops nobody running as root (as CI does), so there the CLI runs as an
    unprivileged user, from a folder that user may enter."""
    folder = Path(tempfile.mkdtemp(prefix="songbatch-unreadable-")) / case["case"]
    folder.parent.chmod(0o755)
    shutil.copytree(BAD_INPUTS / case["case"], folder)
    (folder / case["unreadable"]).chmod(0)
    command = ["render", str(folder / "manifest.yaml"), "--workspace", str(workspace)]
    if os.name != "posix" or os.geteuid() != 0:
        result = invoke(*command)
        return folder, result.exit_code, result.output
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop privileges to test this")
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    if subprocess.run([*drop, sys.executable, "-c", "pass"], capture_output=True).returncode:
        pytest.skip("this Python cannot start as an unprivileged user here")
    done = subprocess.run(
        [*drop, sys.executable, "-m", "songbatch", *command],
        capture_output=True,
        text=True,
        cwd=folder,
        env={**os.environ, "HOME": str(folder)},
        timeout=120,
    )
    return folder, done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "gpu0"], "--devices 'gpu0'"),
        (["--devices", "cpu:0"], "cpu:N needs N"),
        (["--devices", "0,0"], "named twice"),
        (["--time-limit", "soon"], "--time-limit 'soon'"),
        (["--profile", "nosuch"], "unknown profile 'nosuch'"),
    ],
)
def test_bad_options_are_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke("render", str(EXAMPLE_BOOK), "--workspace", str(tmp_path), *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / ".songbatch").exists()


def test_missing_manifest_is_exit_2(tmp_path: Path) -> None:
    result = invoke("render", str(tmp_path / "nope.yaml"), "--workspace", str(tmp_path))
    assert result.exit_code == 2
    assert "nope.yaml" in result.output


def test_plan_reports_without_writing(tmp_path: Path) -> None:
    result = invoke("plan", str(EXAMPLE_BOOK), "--workspace", str(tmp_path), "--json")
    assert result.exit_code == 0
    [row] = json.loads(result.output)
    assert row["new"] == row["jobs"] > 3
    assert row["unchanged"] == 0
    assert row["chars"] > 500 and row["est_ms"] > 30_000
    assert not (tmp_path / ".songbatch").exists()


def test_status_of_an_empty_workspace(tmp_path: Path) -> None:
    result = invoke("status", "--workspace", str(tmp_path), "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == []
    assert not (tmp_path / ".songbatch").exists()


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("45m", 2700), ("6h", 21600), ("1h30m", 5400)]
)
def test_parse_span(text: str, seconds: float) -> None:
    assert parse_span(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "soon", "1d"])
def test_parse_span_rejects(text: str) -> None:
    with pytest.raises(InputError):
        parse_span(text)
