"""The command line: parse, call the library, print. No SQL and no rendering logic here."""

from __future__ import annotations

import os
import re
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from songbatch import __version__
from songbatch.cli.reporter import (
    LOG_FORMATS,
    make_reporter,
    print_actual,
    print_compare,
    print_estimates,
    print_plan,
    print_report,
    print_spoken,
    print_status,
)
from songbatch.errors import InputError, SongbatchError
from songbatch.estimate import actual, compare, estimate, plan_money
from songbatch.importing.book import SplitMode, SplitOptions
from songbatch.manifest import slugify
from songbatch.planner import spoken_chapter
from songbatch.presets import PresetName
from songbatch.render import RenderOptions, load_all, preview, render
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


@app.command(
    name="import", short_help="A book (EPUB, Markdown, text, a folder) -> a manifest to render."
)
def import_command(
    arguments: Annotated[
        list[str],
        typer.Argument(
            help="The book: .epub, .md or .txt, or a folder of .txt/.md chapter files; with"
            " --split pattern, the REGEX may follow (as --pattern).",
            metavar="SOURCE [REGEX]",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Manifest to write (default: the book's name, .yaml, in the current folder);"
            " its chapter texts go in the folder of its name beside it. An existing one keeps"
            " its edits: only chapters it lacks are added.",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        SplitMode,
        typer.Option(
            "--split",
            case_sensitive=False,
            help="Where chapters start: auto, toc (an EPUB's table of contents), headings,"
            " or pattern (with --pattern).",
        ),
    ] = SplitMode.AUTO,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--pattern",
            metavar="REGEX",
            help="A chapter starts at each paragraph whose start matches (Python regex; a"
            " group named title is its title). Implies --split pattern.",
            show_default=False,
        ),
    ] = None,
    include_matter: Annotated[
        bool,
        typer.Option(
            "--include-matter",
            help="Also read front and back matter (copyright, contents, dedication, index,"
            " about the author...).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show the chapters found. Writes nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write an audiobook manifest and one UTF-8 text file per chapter from an EPUB (2 or 3),
    Markdown or plain text file, or a folder of chapter files, ready to edit and render."""
    from songbatch.cli.importing import print_import
    from songbatch.importing.plan import plan_import, write_import

    source, pattern = _source_and_pattern(arguments, split, pattern)
    options = _guard(lambda: split_options(split, pattern))
    manifest = output or default_manifest(source)
    plan = _guard(lambda: plan_import(source, manifest, options, include_matter=include_matter))
    if not dry_run:
        _guard(lambda: write_import(plan))
    print_import(plan, dry_run=dry_run, as_json=as_json)


def default_manifest(source: Path) -> Path:
    """The book's name as a slug, .yaml, here; for a folder, named apart from it, since a
    manifest's chapter texts go in the folder of its name ("tides/" -> tides-audiobook.yaml)."""
    name = slugify(source.absolute().stem)  # "." has a name too
    return Path(f"{name}-audiobook.yaml" if source.is_dir() else f"{name}.yaml")


def split_options(split: SplitMode, pattern: str | None) -> SplitOptions:
    """--split and --pattern as the importer takes them; --pattern alone means pattern."""
    if pattern is None:
        if split is SplitMode.PATTERN:
            raise InputError("--split pattern needs --pattern REGEX")
        return SplitOptions(split)
    if split not in (SplitMode.AUTO, SplitMode.PATTERN):
        raise InputError(f"--pattern goes with --split pattern, not --split {split.value}")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise InputError(f"--pattern {pattern!r}: not a regular expression ({exc})") from None
    return SplitOptions(SplitMode.PATTERN, compiled)


@app.command(short_help="Dry run: what rendering would do. Writes nothing.")
def plan(
    manifests: Manifests,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
    show_text: Annotated[
        int | None,
        typer.Option(
            "--show-text",
            metavar="CHAPTER",
            help="Print what the voice will read in this chapter (from 1), chunk by chunk.",
        ),
    ] = None,
) -> None:
    """Dry run: what rendering would do (new, reused, unchanged jobs; length). Writes nothing."""
    where = resolve_workspace(workspace)
    if show_text is not None:
        planned = _guard(lambda: load_all(manifests, profile, where))
        chapters = _guard(
            lambda: [(p.loaded, *spoken_chapter(p.loaded, p.plan, show_text)) for p in planned]
        )
        print_spoken(chapters, show_text, as_json=as_json)
        return
    previews = _guard(lambda: preview(manifests, profile, where))
    money = _guard(
        lambda: plan_money([(p.planned.plan, p.planned.profile) for p in previews], where)
    )
    print_plan(previews, money, as_json=as_json)


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
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            metavar="NAME",
            help="Where local engines run (default: the profile's executor): local (worker"
            " processes here), ray (actors on a Ray cluster, docs/cluster.md), or a plugin's"
            " backend (`songbatch doctor` lists them).",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="ADDR",
            help="--backend ray: auto, ray://HOST:10001 or HOST:PORT (default: the profile's"
            " ray.address, else a Ray started here).",
        ),
    ] = None,
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
        backend=backend,
        address=address,
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


@app.command(short_help="Can this machine run a profile? Versions, devices, weights, ledger.")
def doctor(
    workspace: WorkspaceOpt = None,
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="Profile to check (default: local).")
    ] = None,
    online: Annotated[
        bool, typer.Option("--online", help="Also check the Replicate token with one API call.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Python and package versions, CUDA devices and free memory, ffmpeg and espeak-ng, model
    weights in the Hugging Face cache, the Replicate token, the ledger and free disk. Exit 0
    when the profile can run here, 1 when not (each failing check says what to do)."""
    from songbatch.cli.tools import print_doctor
    from songbatch.doctor import diagnose

    report = _guard(lambda: diagnose(resolve_workspace(workspace), profile, online=online))
    print_doctor(report, as_json=as_json)
    raise typer.Exit(report.exit_code)


@app.command(short_help="Drop chunk files and job rows no planned manifest uses.")
def gc(
    workspace: WorkspaceOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be freed.")
    ] = False,
    forget_missing: Annotated[
        bool,
        typer.Option(
            "--forget-missing",
            help="Also forget planned manifests whose YAML file is gone, and free their chunks.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Free the chunk cache of what no planned manifest needs (removed chapters, old edits,
    previews). Waits for no render: exit 75 while one holds the ledger."""
    from songbatch.cli.tools import print_gc
    from songbatch.gc import collect_garbage

    report = _guard(
        lambda: collect_garbage(
            resolve_workspace(workspace), dry_run=dry_run, forget_missing=forget_missing
        )
    )
    print_gc(report, as_json=as_json)
    raise typer.Exit(1 if report.errors else 0)


@app.command(name="preview", short_help="The opening seconds of one chapter or track.")
def preview_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest YAML file.", show_default=False)],
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    chapter: Annotated[
        int | None, typer.Option("--chapter", help="Audiobooks: chapter number (from 1).")
    ] = None,
    track: Annotated[
        int | None, typer.Option("--track", help="Albums: track number (from 1).")
    ] = None,
    seconds: Annotated[
        float, typer.Option("--seconds", help="How much of its opening to render.")
    ] = 30.0,
    devices: Annotated[
        str | None,
        typer.Option("--devices", "-d", help="auto, cpu, cpu:N, or CUDA indices like 0,1."),
    ] = None,
) -> None:
    """Render the opening of one chapter or track into <workspace>/previews/<slug>/. Not the
    real render: the manifest is not planned, but the chunks are the real ones and are kept
    in the cache for it."""
    from songbatch.cli.tools import print_preview
    from songbatch.preview import PreviewOptions, preview_unit

    options = PreviewOptions(
        workspace=resolve_workspace(workspace),
        profile=profile,
        chapter=chapter,
        track=track,
        seconds=seconds,
        devices=devices,
        argv=sys.argv,
    )
    reporter = make_reporter(sys.stderr, quiet=True)
    with reporter:
        result = _guard(lambda: preview_unit(manifest, options, reporter.observe))
    ignore_stop_signals()
    print_preview(result)


@app.command(short_help="Measure finished files against a mastering preset (ACX, podcast).")
def check(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Audio files, folders of them, or manifests (their rendered outputs).",
            show_default=False,
        ),
    ],
    preset: Annotated[
        PresetName | None,
        typer.Option(
            "--preset",
            case_sensitive=False,
            help="Rules to hold the files to (default: measure and report only).",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Loudness (integrated LUFS, RMS), true peak, noise floor, head and tail room tone,
    sample rate, channels, codec, bitrate, CBR, tags and chapters of each file; with --preset,
    each of its rules passed or failed. Exit 0 when every file passes, 1 when one fails a rule,
    2 when a path is missing or a file cannot be read."""
    from songbatch.cli.tools import print_check
    from songbatch.presets import preset as preset_named
    from songbatch.quality import check_files, check_paths

    rules = None if preset is None else preset_named(preset)
    checks = _guard(
        lambda: check_files(
            check_paths(paths, resolve_workspace(workspace) if workspace else None), rules
        )
    )
    print_check(checks, rules, as_json=as_json)
    raise typer.Exit(0 if all(item.passed for item in checks) else 1)


@app.command(short_help="Time and money to render what is left; or what was spent.")
def cost(
    manifests: Annotated[
        list[Path] | None,
        typer.Argument(help="Manifests or folders (every *.yaml in one).", show_default=False),
    ] = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    compare_with: Annotated[
        str | None,
        typer.Option(
            "--compare",
            metavar="P1,P2,...",
            help="Profiles side by side in one table, cheapest first.",
            show_default=False,
        ),
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices", "-d", help="Local profiles: as render takes it (default: the profile's)."
        ),
    ] = None,
    spent: Annotated[
        bool,
        typer.Option(
            "--actual",
            help="What was spent: settled remote spend and device hours, from the ledger.",
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE[THH:MM]",
            help="--actual: from this UTC date (YYYY-MM-DD) or local time (2026-12-01T22:00) on.",
        ),
    ] = None,
    by: Annotated[
        str,
        typer.Option("--by", metavar="run|day|manifest|profile", help="--actual: grouping."),
    ] = "run",
    as_json: JsonOpt = False,
) -> None:
    """Estimate the work left per manifest and profile (jobs, characters, audio, wall time on
    the profile's devices, money), or with --actual show what was spent. Writes nothing."""
    where = resolve_workspace(workspace)
    if spent:
        if manifests or profile or compare_with:
            _usage("--actual reads the ledger only: give no manifests, --profile or --compare")
        print_actual(_guard(lambda: actual(where, by=by, since=since)), as_json=as_json)
        return
    if since is not None or by != "run":
        _usage("--since and --by go with --actual")
    if profile is not None and compare_with is not None:
        _usage("use --profile or --compare, not both")
    names: list[str | None] = [profile]
    if compare_with is not None:
        names = [name.strip() for name in compare_with.split(",") if name.strip()]
        if len(names) < 2 or len(set(names)) != len(names):
            _usage(f"--compare {compare_with!r}: name two or more different profiles")
    estimates = _guard(lambda: estimate(manifests or [], names, where, devices=devices))
    if compare_with is not None:
        print_compare(estimates, compare(estimates), as_json=as_json)
    else:
        print_estimates(estimates, as_json=as_json)


def _source_and_pattern(
    arguments: list[str], split: SplitMode, pattern: str | None
) -> tuple[Path, str | None]:
    """SOURCE, and the REGEX of `--split pattern REGEX` where it was written so: of two
    arguments, the one that names a file or folder is the book."""
    if len(arguments) == 1:
        return Path(arguments[0]), pattern
    if len(arguments) == 2 and split is SplitMode.PATTERN and pattern is None:
        books = [a for a in arguments if Path(a).exists()]
        if len(books) == 1:
            [regex] = [a for a in arguments if a != books[0]] or [books[0]]
            return Path(books[0]), regex
    _usage(
        "import takes one SOURCE; a chapter pattern goes after --split pattern"
        " (or in --pattern REGEX)"
    )


def _usage(message: str) -> NoReturn:
    typer.echo(f"songbatch: error: {message}", err=True)
    raise typer.Exit(2)


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
