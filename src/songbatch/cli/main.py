"""The command line: parse, call the library, print. No SQL and no rendering logic here."""

from __future__ import annotations

import os
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from songbatch import __version__
from songbatch.cli.reporter import (
    LOG_FORMATS,
    make_reporter,
    print_plan,
    print_report,
    print_status,
)
from songbatch.errors import InputError, SongbatchError
from songbatch.render import RenderOptions, preview, render
from songbatch.signals import ignore_stop_signals
from songbatch.spans import EXAMPLES, UNTIL_EXAMPLES, SpanError, next_occurrence
from songbatch.spans import parse_span as parse_span_text
from songbatch.status import manifest_status, retry_jobs
from songbatch.workspace import resolve_workspace

app = typer.Typer(
    name="songbatch",
    help="Render audiobooks and albums from YAML manifests, resumably.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Click's plain help, not Typer's rich panels: those show every flag as taking a value
    # (`--json <bool>`), draw boxes into pipes and cut lines at 80 columns outside a terminal.
    rich_markup_mode=None,
)

Manifests = Annotated[list[Path], typer.Argument(help="Manifest YAML files.", show_default=False)]
WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Folder holding .songbatch/ (default: $SONGBATCH_HOME, else the current folder).",
    ),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile", "-p", help="Profile name or YAML path (default: the manifest's, else local)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"songbatch {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """songbatch: batch renderer for audiobooks and albums."""


@app.command(short_help="Dry run: what rendering would do. Writes nothing.")
def plan(
    manifests: Manifests,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Dry run: what rendering would do (new, reused, unchanged jobs; length). Writes nothing."""
    previews = _guard(lambda: preview(manifests, profile, resolve_workspace(workspace)))
    print_plan(previews, as_json=as_json)


@app.command(name="render", short_help="Plan into the ledger and render what is not done.")
def render_command(
    manifests: Manifests,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    devices: Annotated[
        str | None,
        typer.Option("--devices", "-d", help="auto, cpu, cpu:N, or CUDA indices like 0,1."),
    ] = None,
    time_limit: Annotated[
        str | None,
        typer.Option(
            "--time-limit",
            metavar="SPAN",
            help=f"Stop handing out jobs after this long ({EXAMPLES}; a bare number is seconds).",
        ),
    ] = None,
    max_spend: Annotated[
        float | None,
        typer.Option(
            "--max-spend",
            help="Remote profiles: most USD this run may spend (reserved before each call).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Only warnings, errors and the summary: no line per job."
        ),
    ] = False,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="HH:MM",
            help=f"Stop handing out jobs in time to end by this local time ({UNTIL_EXAMPLES};"
            " its next occurrence).",
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            metavar="FORMAT",
            help="auto (progress on a terminal, lines elsewhere), plain (timestamped lines)"
            " or json (one JSON object per event line).",
        ),
    ] = "auto",
) -> None:
    """Plan the manifests (files, or folders of *.yaml) into the ledger and render everything
    not yet done."""
    if log_format not in LOG_FORMATS:
        _guard(lambda: _bad(f"--log-format {log_format!r}: expected {', '.join(LOG_FORMATS)}"))
    options = RenderOptions(
        workspace=resolve_workspace(workspace),
        profile=profile,
        devices=devices,
        time_limit_s=None if time_limit is None else _guard(lambda: parse_span(time_limit)),
        until_epoch=None if until is None else _guard(lambda: parse_until(until)),
        max_spend=max_spend,
        argv=sys.argv,
    )
    reporter = make_reporter(sys.stderr, quiet=quiet, log_format=log_format)
    with reporter:
        report = _guard(lambda: render(manifests, options, reporter.observe))
    # Done and recorded: a signal now would only make the exit code disagree with the ledger.
    ignore_stop_signals()
    print_report(report, log_format=log_format)
    raise typer.Exit(report.exit_code)


@app.command(short_help="Jobs per manifest and state, audio rendered, outputs, failures.")
def status(
    manifests: Annotated[
        list[Path] | None, typer.Argument(help="Manifests (default: every planned one).")
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Hash every rendered chunk and output against the ledger (slow)."
        ),
    ] = False,
) -> None:
    """Jobs per manifest and per state, audio rendered, outputs written."""
    rows = _guard(
        lambda: manifest_status(resolve_workspace(workspace), manifests or [], verify=verify)
    )
    print_status(rows, as_json=as_json)
    if verify and not all(row.verification is None or row.verification.ok for row in rows):
        raise typer.Exit(1)


@app.command(short_help="Failed jobs back to pending for the next render.")
def retry(
    manifests: Annotated[
        list[Path] | None, typer.Argument(help="Manifests (default: every planned one).")
    ] = None,
    workspace: WorkspaceOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Also render done jobs again (recorded in the ledger).")
    ] = False,
) -> None:
    """Put failed jobs back to pending; the next `render` tries them again."""
    count = _guard(lambda: retry_jobs(resolve_workspace(workspace), manifests or [], force=force))
    typer.echo(f"{count} job(s) back to pending" + (" (forced)" if force else ""))


def parse_span(text: str) -> float:
    """--time-limit's value in seconds (grammar in `songbatch.spans`); the error names the
    option."""
    try:
        return parse_span_text(text)
    except SpanError as exc:
        raise InputError(f"--time-limit {text!r}: {exc}") from None


def parse_until(text: str) -> float:
    """--until's value: the epoch time of its next local occurrence."""
    try:
        return next_occurrence(text, datetime.now(timezone.utc)).timestamp()
    except SpanError as exc:
        raise InputError(f"--until {text!r}: {exc}") from None


def _bad(message: str) -> None:
    raise InputError(message)


def _guard(action: Any) -> Any:
    """Typed errors become one line and their exit code; anything else is a bug, said as such."""
    try:
        return action()
    except SongbatchError as exc:
        typer.echo(f"songbatch: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("songbatch: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("SONGBATCH_DEBUG"):
            traceback.print_exc()
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        typer.echo(
            f"songbatch: internal error: {detail} (set SONGBATCH_DEBUG=1 for a traceback)",
            err=True,
        )
        raise typer.Exit(70) from None


def run() -> None:
    """The console entry point (kept for scripts that import it): see `songbatch.entry`."""
    from songbatch.entry import main as entry_main

    entry_main()
