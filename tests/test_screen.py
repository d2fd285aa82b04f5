"""What a person reads: user text printed as written (no rich markup, no emoji codes), nothing cut
at 80 columns outside a terminal, --quiet, the progress display on a terminal, flags in --help."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from helpers.books import synthetic_profile
from songbatch.cli.main import app
from songbatch.cli.reporter import PlainReporter, RichReporter
from songbatch.events import RunEvent

# Brackets that rich would take for markup, an emoji code, and length far past 80 columns.
TITLE = ("Bad [voice] and [bold]loud[/bold] :fire: " + "very long title " * 20)[:300].strip()
CHAPTER = "Chapter [2] :smile:"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def text(result: Any) -> str:
    """What a person reads, without colour codes (FORCE_COLOR may be set where tests run)."""
    return ANSI.sub("", result.output)


@pytest.fixture
def deep(tmp_path: Path) -> Path:
    """A workspace whose path alone is far past 80 columns, with a book titled TITLE whose
    second chapter fails for good (the synthetic engine's marker)."""
    folder = tmp_path / ("p" * 120) / ("q" * 120)
    folder.mkdir(parents=True)
    assert len(str(folder)) > 250
    synthetic_profile(folder, latency_ms=1, devices="cpu:1")
    lines = [
        "kind: audiobook",
        f"title: {json.dumps(TITLE)}",
        "author: Test Author",
        "profile: synthetic.yaml",
        "formats: [flac]",
        "speak_titles: false",
        "chapters:",
        f"  - title: {json.dumps('Chapter [1]')}",
        "    text: The tide came in at noon.",
        f"  - title: {json.dumps(CHAPTER)}",
        "    text: This one is POISON for the engine.",
    ]
    (folder / "book.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_plan_prints_a_long_bracketed_title_whole_on_one_line(deep: Path) -> None:
    result = invoke("plan", str(deep / "book.yaml"), "--workspace", str(deep))
    assert result.exit_code == 0, result.output
    assert len(TITLE) == 300
    assert [line for line in text(result).splitlines() if TITLE in line], result.output


def test_render_and_status_print_titles_and_paths_whole(deep: Path) -> None:
    result = invoke("render", str(deep / "book.yaml"), "--workspace", str(deep))
    assert result.exit_code == 1, result.output
    lines = text(result).splitlines()
    # The summary's failure line: title, chapter and error whole, on one line.
    assert any(
        line.startswith(f"failed {TITLE} / {CHAPTER}: synthetic failure") for line in lines
    ), result.output
    # Every file written is named in full on its own line.
    [written] = [p for p in (deep / "outputs").rglob("*.flac") if "Chapter [1]" in p.name]
    assert len(str(written)) > 300
    assert any(line.endswith(f" output {written}") for line in lines), result.output

    result = invoke("status", str(deep / "book.yaml"), "--workspace", str(deep))
    assert result.exit_code == 0, result.output
    lines = text(result).splitlines()
    assert any(TITLE in line and "audiobook" in line for line in lines), result.output
    assert any(
        line.startswith(f"failed {TITLE} / {CHAPTER}: synthetic failure") for line in lines
    ), result.output


def test_quiet_render_prints_only_what_needs_attention_and_the_summary(deep: Path) -> None:
    result = invoke("render", str(deep / "book.yaml"), "--workspace", str(deep), "--quiet")
    assert result.exit_code == 1, result.output
    output = text(result)
    kinds = {line.split(" ")[1] for line in output.splitlines() if line[:2] == "20"}
    assert kinds == {"job-failed"}, output
    assert "rendered 1 job(s), 1 failed" in output
    assert f"failed {TITLE} / {CHAPTER}" in output


def test_plain_reporter_quiet_keeps_warnings_and_drops_progress() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream, quiet=True)
    reporter.observe(RunEvent("run-started", data={"jobs": 3, "workers": 1}))
    reporter.observe(RunEvent("job-done", worker="cpu0", job="a" * 64, data=_done()))
    reporter.observe(RunEvent("output", "/x/y.flac"))
    reporter.observe(RunEvent("warning", "Bad [voice] is gone"))
    reporter.observe(RunEvent("worker-died", "exit 9", worker="cpu0"))
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 2)[1:] for line in lines] == [
        ["warning", "Bad [voice] is gone"],
        ["worker-died", "cpu0 exit 9"],
    ]


def _done(audio_ms: int = 3000, render_ms: int = 1000) -> dict[str, int]:
    return {"duration_ms": audio_ms, "render_ms": render_ms}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rich_reporter_shows_devices_rates_and_the_eta_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    clock = FakeClock()
    reporter = RichReporter(console, clock=clock)
    key = "3fa2c1d0e4b2" + "0" * 52
    with reporter:
        reporter.observe(RunEvent("run-started", data={"jobs": 10, "workers": 2}))
        for worker in ("cuda:0", "cuda:1"):
            reporter.observe(RunEvent("worker-ready", worker=worker))
        clock.now = 10.0
        reporter.observe(RunEvent("job-done", worker="cuda:0", job="a", data=_done()))
        clock.now = 12.0
        reporter.observe(RunEvent("job-done", worker="cuda:1", job="b", data=_done(3000, 1500)))
        clock.now = 14.0
        reporter.observe(RunEvent("job-done", worker="cuda:0", job="c", data=_done()))
        reporter.observe(RunEvent("job-started", worker="cuda:0", job=key))
        reporter.observe(RunEvent("warning", "voice [narrator] :fire: missing", worker="cuda:1"))
        reporter.observe(RunEvent("output", "/books/[draft]/Chapter [1].mp3"))
        reporter.progress.refresh()
    screen = ANSI.sub("", out.getvalue())
    # Three done after the first at 10 s: 2 more in 4 s = 30 jobs/min; 7 left = 14 s.
    assert "3/10 jobs, 30.0 jobs/min, ETA 14s" in screen, screen
    # cuda:0: rendering the new job, 2 done, 1 more in 4 s since its first, 3 s audio per 1 s.
    assert re.search(r"cuda:0 .*rendering 3fa2c1d0e4b2, 2 done, 15\.0 jobs/min, 3\.0x", screen)
    assert re.search(r"cuda:1 .*idle, 1 done, rate: measuring, 2\.0x real time", screen)
    assert "warning cuda:1: voice [narrator] :fire: missing" in screen
    assert "wrote /books/[draft]/Chapter [1].mp3" in screen


def test_rich_reporter_eta_moves_with_the_clock_between_events() -> None:
    out = io.StringIO()
    clock = FakeClock()
    reporter = RichReporter(Console(file=out, force_terminal=True, width=160), clock=clock)
    with reporter:
        reporter.observe(RunEvent("run-started", data={"jobs": 4, "workers": 1}))
        for t, job in ((1.0, "a"), (2.0, "b")):
            clock.now = t
            reporter.observe(RunEvent("job-done", worker="cpu0", job=job, data=_done()))
        clock.now = 6.0  # nothing finished for 4 s: 1 job in 5 s, 2 left
        reporter.progress.refresh()
    assert "2/4 jobs, 12.0 jobs/min, ETA 10s" in ANSI.sub("", out.getvalue())


def _commands() -> list[tuple[list[str], Any]]:
    """(argv before --help, the click command) of the app and each of its commands."""
    root: Any = typer.main.get_command(app)
    return [([], root)] + [([name], command) for name, command in root.commands.items()]


COMMANDS = _commands()


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(path) or "songbatch" for path, _ in COMMANDS]
)
def test_every_boolean_option_shows_as_a_flag_in_help(path: list[str], command: Any) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0
    params = command.get_params(command.context_class(command))
    flags = [p for p in params if getattr(p, "is_flag", False)]
    assert flags, "every command has at least --help"
    for flag in flags:
        names = r",\s*".join(re.escape(opt) for opt in sorted(flag.opts, key=len))
        # `  -q, --quiet   Only warnings...`: the names, then the help, no value placeholder.
        assert re.search(rf"^\s+{names}\s{{2,}}\S", result.output, re.MULTILINE), (
            flag.opts,
            result.output,
        )
    assert "<bool>" not in result.output


def test_render_help_describes_the_span_grammar() -> None:
    output = invoke("render", "--help").output
    assert "--time-limit SPAN" in output
    assert "1.5h" in output and "2h 15min" in output
