"""How a run and its results look: rich progress on a terminal, timestamped lines elsewhere (cron,
CI, a pipe), only warnings and errors with --quiet, JSON where asked.

User text (titles, paths, errors, event messages) is always a rich `Text`, never markup: a title
like `Bad [voice]` or `Track :fire:` prints as written. Outside a terminal nothing is cut or
wrapped at rich's default 80 columns: a log line or a table row is as long as it needs to be.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from rich.console import Console, RenderableType
from rich.progress import Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from songbatch.estimate import Actual, CompareRow, Estimate
from songbatch.events import RunEvent
from songbatch.manifest import LoadedManifest
from songbatch.planner import SpokenChunk
from songbatch.progress import DeviceMeter, RunMeter
from songbatch.render import Preview, RenderReport
from songbatch.runsummary import RunSummary
from songbatch.spans import format_span
from songbatch.status import ManifestStatus, Verification

# Wide enough that no real line or table reaches it: a pipe or a log file has no width.
UNBOUNDED_WIDTH = 1_000_000

# What --quiet still prints: anything that went wrong or needs a person's attention.
ATTENTION = frozenset(
    {
        "warning",
        "job-failed",
        "job-set-aside",
        "worker-died",
        "worker-gave-up",
        "assembly-failed",
        "check-failed",
        "deadline",
    }
)


def screen(file: IO[str]) -> Console:
    """A console for the CLI's output: rich's own on a terminal; elsewhere one that never wraps,
    cuts or ellipsises (rich assumes 80 columns when the output is not a terminal)."""
    # The stream itself decides, not rich's guess: FORCE_COLOR makes rich take a pipe for a
    # terminal, and then for one 80 columns wide.
    if _is_tty(file):
        return Console(file=file)
    return Console(file=file, width=UNBOUNDED_WIDTH, soft_wrap=True)


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _line(label: str, style: str, *parts: str) -> Text:
    """`label` in `style`, then user text as it is."""
    return Text.assemble((label, style), " ", *parts)


def _clock(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


_R = TypeVar("_R", bound="_LineReporter")


class _LineReporter:
    """A reporter that writes whole lines to a stream, from any thread (the assembly thread
    reports too); with `quiet`, only the events in ATTENTION."""

    def __init__(self, stream: IO[str], *, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self._lock = threading.Lock()

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stream.flush()

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()


class PlainReporter(_LineReporter):
    """One timestamped line per event that a person reading a cron mail would want; with
    `quiet`, only the events in ATTENTION."""

    SKIPPED = frozenset({"job-started", "progress"})

    def observe(self, event: RunEvent) -> None:
        if event.kind in self.SKIPPED or (self.quiet and event.kind not in ATTENTION):
            return
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        parts = [stamp, event.kind]
        if event.worker:
            parts.append(event.worker)
        if event.job:
            parts.append(event.job[:12])
        if event.message:
            parts.append(event.message)
        parts.extend(_details(event))
        self._line(" ".join(parts))


class JsonReporter(_LineReporter):
    """`--log-format json`: one JSON object per line and event, for log shippers: ts (UTC ISO),
    kind, worker, job, message, data. With `quiet`, only the events in ATTENTION."""

    def observe(self, event: RunEvent) -> None:
        if event.kind == "progress" or (self.quiet and event.kind not in ATTENTION):
            return
        self.write(event.kind, event.message, worker=event.worker, job=event.job, data=event.data)

    def write(
        self,
        kind: str,
        message: str = "",
        *,
        worker: str | None = None,
        job: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        record = {
            "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "kind": kind,
            "worker": worker,
            "job": job,
            "message": message,
            "data": data or {},
        }
        # default=str: a Path or an exception in an event's data must not end the run.
        self._line(json.dumps(record, ensure_ascii=False, default=str))


def _took(ms: int) -> str:
    """A fast engine's chunk takes milliseconds: "in 0.0 s" would read as nothing done."""
    return f"{ms} ms" if ms < 100 else f"{ms / 1000:.1f} s"


def _details(event: RunEvent) -> list[str]:
    data = event.data
    if event.kind == "job-done":
        return [f"{data['duration_ms'] / 1000:.1f} s audio in {_took(data['render_ms'])}"]
    if event.kind == "planned":
        return [
            f"new={data['new']} reused={data['reused']} unchanged={data['unchanged']}"
            f" dropped={data['dropped']}"
        ]
    if event.kind == "run-started":
        return [f"{data['jobs']} job(s) on {data['workers']} worker(s)"]
    if event.kind == "engine-loaded":
        return [f"in {data['seconds']:.1f} s, up to {data['batch_limit']} job(s) per call"]
    return []


class _LineColumn(ProgressColumn):
    """The rest of a line, computed when the display refreshes (so rates and the ETA move
    between events): a bar and the note on the overall line, only the note on a device's (it
    has no total to fill), so no device line carries an empty bar's width."""

    def __init__(self, note: Callable[[TaskID], Text]) -> None:
        super().__init__()
        self._note = note

    def render(self, task: Task) -> RenderableType:
        note = self._note(task.id)
        note.no_wrap, note.overflow = True, "ellipsis"  # on a terminal: one line per device
        if task.total is None:
            return note
        line = Table.grid(padding=(0, 1))
        line.add_row(ProgressBar(total=task.total, completed=task.completed, width=30), note)
        return line


class RichReporter:
    """On a terminal: an overall line (bar, jobs done, rate, ETA) and one line per device (what
    it renders now, what it has finished, its rate); warnings and files written print above."""

    def __init__(self, console: Console, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.meter = RunMeter()
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            _LineColumn(self._note),
            # rich's default redirection of sys.stdout and sys.stderr stays: an error line
            # echoed while the display is live is printed above it instead of torn by it.
            console=console,
        )
        self._overall: TaskID | None = None
        self._tasks: dict[TaskID, str] = {}  # device line -> device name
        self._lock = threading.Lock()  # events come from the run's threads, renders from rich's

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def observe(self, event: RunEvent) -> None:
        with self._lock:
            self._count(event)
        self._show(event)

    def _count(self, event: RunEvent) -> None:
        now, worker, job = self.clock(), event.worker or "", event.job or ""
        if event.kind == "run-started":
            self.meter.total = int(event.data["jobs"])
        elif event.kind == "job-started" and worker:
            self.meter.started(worker, job)
        elif event.kind == "job-done" and worker:
            self.meter.done(
                worker,
                job,
                now,
                audio_ms=int(event.data.get("duration_ms", 0)),
                render_ms=int(event.data.get("render_ms", 0)),
            )
        elif event.kind == "job-failed" and worker:
            self.meter.failed(worker, job, now)
        elif event.kind in ("job-set-aside", "job-discarded") and worker:
            self.meter.returned(worker, job)
        elif event.kind in ("worker-died", "worker-gave-up") and worker:
            self.meter.lost(worker)

    def _show(self, event: RunEvent) -> None:
        if event.kind == "run-started":
            self._overall = self.progress.add_task("jobs", total=self.meter.total)
        if event.worker and event.kind in ("worker-ready", "job-started", "engine-loaded"):
            self._device_line(event.worker)
        if self._overall is not None:
            self.progress.update(self._overall, completed=self.meter.finished)
        if event.kind in ATTENTION:
            who = f"{event.worker}: " if event.worker else ""
            self.console.print(_line(event.kind, "yellow", who, event.message))
        elif event.kind == "output":
            self.console.print(_line("wrote", "green", event.message))
        elif event.kind == "checked":
            self.console.print(_line("checked", "green", event.message))
        elif event.kind == "removed":
            self.console.print(_line("removed", "yellow", event.message))

    def _device_line(self, name: str) -> None:
        if name not in self._tasks.values():
            task = self.progress.add_task(f"  {name}", total=None)
            self._tasks[task] = name

    def _note(self, task: TaskID) -> Text:
        with self._lock:
            now = self.clock()
            if task == self._overall:
                return Text(overall_note(self.meter, now))
            name = self._tasks.get(task)
            return Text("" if name is None else device_note(self.meter.device(name), now))


def _per_minute(rate: float | None) -> str:
    return "rate: measuring" if rate is None else f"{rate * 60:.1f} jobs/min"


def overall_note(meter: RunMeter, now: float) -> str:
    """`12/40 jobs, 3.1 jobs/min, ETA 9m02s`."""
    eta = meter.eta_s(now)
    parts = [f"{meter.finished}/{meter.total} jobs", _per_minute(meter.per_second(now))]
    parts.append("ETA measuring" if eta is None else f"ETA {format_span(eta)}")
    return ", ".join(parts)


def device_note(device: DeviceMeter, now: float) -> str:
    """`rendering 3fa2c1d0e4b2 (+1), 7 done, 2.0 jobs/min, 11.5x real time`."""
    if device.rendering:
        extra = len(device.rendering) - 1
        doing = f"rendering {device.rendering[0][:12]}" + (f" (+{extra})" if extra else "")
    else:
        doing = "idle"
    parts = [doing, f"{device.done} done"]
    if device.failed:
        parts.append(f"{device.failed} failed")
    parts.append(_per_minute(device.throughput.per_second(now)))
    factor = device.realtime_factor()
    if factor is not None:
        parts.append(f"{factor:.1f}x real time")
    return ", ".join(parts)


LOG_FORMATS = ("auto", "plain", "json")


def make_reporter(
    stream: IO[str], *, quiet: bool = False, log_format: str = "auto"
) -> PlainReporter | RichReporter | JsonReporter:
    if log_format == "json":
        return JsonReporter(stream, quiet=quiet)
    if quiet or log_format == "plain" or not _is_tty(stream):
        return PlainReporter(stream, quiet=quiet)
    return RichReporter(Console(file=stream))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_plan(
    previews: Sequence[Preview], money: Sequence[Estimate | None], *, as_json: bool
) -> None:
    rows: list[dict[str, Any]] = []
    for item, cost in zip(previews, money, strict=True):
        plan, diff = item.planned.plan, item.diff
        rows.append(
            {
                "manifest": str(item.planned.loaded.path),
                "title": plan.record.title,
                "profile": item.planned.profile.name,
                "jobs": len(plan.jobs),
                "new": diff.new,
                "reused": diff.reused,
                "unchanged": diff.unchanged,
                "dropped": diff.dropped,
                "chars": plan.chars,
                "est_ms": plan.est_ms,
                # Remote profiles: `songbatch cost`'s figures for the work left (None: local).
                "usd_expected": None if cost is None else cost.usd_expected,
                "usd_worst": None if cost is None else cost.usd_worst,
            }
        )
    if as_json:
        _print_json(rows)
        return
    table = Table(
        "manifest",
        "profile",
        "jobs",
        "new",
        "reused",
        "unchanged",
        "dropped",
        "chars",
        "est. length",
        "est. USD (worst)",
    )
    for row in rows:
        table.add_row(
            Text(row["title"]),
            Text(row["profile"]),
            *(str(row[k]) for k in ("jobs", "new", "reused", "unchanged", "dropped", "chars")),
            _clock(row["est_ms"]),
            _money_pair(row["usd_expected"], row["usd_worst"]),
        )
    screen(sys.stdout).print(table)


def print_spoken(
    chapters: Sequence[tuple[LoadedManifest, str, Sequence[SpokenChunk]]],
    number: int,
    *,
    as_json: bool,
) -> None:
    """`plan --show-text`: each chunk of the chapter as the engine will read it, numbered, with
    the pause after it."""
    if as_json:
        _print_json(
            [
                {
                    "manifest": str(loaded.path),
                    "chapter": number,
                    "title": title,
                    "chunks": [
                        {"text": c.text, "chars": len(c.text), "pause_after_ms": c.pause_after_ms}
                        for c in chunks
                    ],
                }
                for loaded, title, chunks in chapters
            ]
        )
        return
    console = screen(sys.stdout)
    for loaded, title, chunks in chapters:
        console.print(Text(f"{loaded.path}: chapter {number}, {title} ({len(chunks)} chunks)"))
        width = len(str(len(chunks)))
        for seq, chunk in enumerate(chunks, 1):
            pause = f"  [pause {chunk.pause_after_ms / 1000:g} s]"
            console.print(Text(f"{seq:>{width}}  {chunk.text}{pause}"))


def usd(value: float | None) -> str:
    """Money as a person reads it: cents, or four places under a dollar; '-' when unknown."""
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def _money_pair(expected: float | None, worst: float | None) -> str:
    if worst is None:
        return usd(expected)
    return f"{usd(expected)} ({usd(worst)})"


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return _clock(round(seconds * 1000))


def print_estimates(estimates: Sequence[Estimate], *, as_json: bool) -> None:
    """`songbatch cost`: one row per manifest and profile, then where each figure comes from
    and what would make an unknown one known."""
    if as_json:
        _print_json({"estimates": [e.as_dict() for e in estimates]})
        return
    console = screen(sys.stdout)
    table = Table(
        "manifest",
        "profile",
        "jobs left",
        "chars",
        "audio",
        "done (free)",
        "devices",
        "device time",
        "wall time",
        "time from",
        "USD expected",
        "USD worst",
        "money from",
    )
    for item in estimates:
        table.add_row(
            Text(item.title),
            Text(item.profile),
            str(item.jobs_left),
            str(item.chars_left),
            _span(item.audio_left_s),
            f"{item.jobs_done} jobs, {_span(item.audio_done_s)}",
            f"{item.devices} {item.device_type}",
            _span(item.device_s),
            _span(item.wall_s),
            Text(item.time_from),
            usd(item.usd_expected),
            usd(item.usd_worst),
            Text(item.money_from),
        )
    console.print(table)
    _print_basis(console, estimates)


def _print_basis(console: Console, estimates: Sequence[Estimate]) -> None:
    seen: set[str] = set()
    for item in estimates:
        for basis in item.basis:
            value = "-" if basis.value is None else f"{basis.value:.4g}"
            line = f"{basis.figure} = {value}: {basis.label()}"
            if basis.note:
                line += f" ({basis.note})"
            if line not in seen:
                seen.add(line)
                console.print(_line("basis", "cyan", line))
        for hint in item.hints:
            if hint not in seen:
                seen.add(hint)
                console.print(_line("hint", "yellow", hint))


def print_compare(
    estimates: Sequence[Estimate], rows: Sequence[CompareRow], *, as_json: bool
) -> None:
    """`cost --compare`: one row per profile, cheapest first."""
    if as_json:
        _print_json(
            {
                "compare": [row.__dict__ for row in rows],
                "estimates": [e.as_dict() for e in estimates],
            }
        )
        return
    console = screen(sys.stdout)
    table = Table(
        "profile", "jobs left", "wall time", "time from", "USD expected", "USD worst", "money from"
    )
    for row in rows:
        table.add_row(
            Text(row.profile),
            str(row.jobs_left),
            _span(row.wall_s),
            Text(row.time_from),
            usd(row.usd_expected),
            usd(row.usd_worst),
            Text(row.money_from),
        )
    console.print(table)
    _print_basis(console, estimates)


def print_actual(result: Actual, *, as_json: bool) -> None:
    """`cost --actual`: settled spend and device hours per group; open reservations apart."""
    rows = [*result.rows, result.total]
    if as_json:
        _print_json(
            {
                "by": result.by,
                "since": result.since,
                "rows": [row.__dict__ for row in result.rows],
                "total": result.total.__dict__,
            }
        )
        return
    console = screen(sys.stdout)
    if not result.rows:
        console.print("nothing rendered in this workspace yet", markup=False)
        return
    table = Table(result.by, "spent USD", "predictions", "device hours", "renders", "open USD")
    for row in rows:
        table.add_row(
            Text(row.group),
            usd(row.settled_usd),
            str(row.predictions),
            f"{row.device_ms / 3_600_000:.4f}",
            str(row.renders),
            f"{usd(row.open_usd)} ({row.open_count} open)" if row.open_count else "-",
        )
    console.print(table)
    if result.total.open_count:
        console.print(
            _line(
                "open",
                "yellow",
                f"{result.total.open_count} reservation(s), {usd(result.total.open_usd)}: not"
                " settled yet (a run in progress, or a crash the next run reconciles); they"
                " count against the caps until then",
            )
        )


def print_status(rows: Sequence[ManifestStatus], *, as_json: bool) -> None:
    if as_json:
        _print_json([row.as_dict() for row in rows])
        return
    console = screen(sys.stdout)
    if not rows:
        console.print("nothing planned in this workspace yet")
        return
    table = Table(
        "manifest", "kind", "pending", "leased", "done", "failed", "rendered", "est. length"
    )
    for row in rows:
        table.add_row(
            Text(row.title),
            row.kind,
            *(str(row.jobs[state]) for state in ("pending", "leased", "done", "failed")),
            _clock(row.rendered_ms),
            _clock(row.est_ms),
        )
    console.print(table)
    for row in rows:
        if row.spilled:
            console.print(Text(f"{row.title}: {spilled_line(row.spilled)}"))
        _print_problems(console, row)


def spilled_line(spilled: dict[str, int]) -> str:
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(spilled.items()))
    return f"spilled {sum(spilled.values())} job(s) to the spill-over backend ({reasons})"


def _print_problems(console: Console, row: ManifestStatus) -> None:
    title = row.title
    for failure in row.failed:
        unit, error = failure.unit, str(failure.error)
        console.print(_line("failed", "red", title, " / ", unit, ": ", error))
    for pending in row.set_aside:
        unit, error = pending.unit, str(pending.error)
        console.print(
            _line(
                "pending",
                "yellow",
                title,
                " / ",
                unit,
                ": ",
                error,
                " (transient: the next render tries it again)",
            )
        )
    for unwritten in row.output_failures:
        console.print(_line("not written", "red", unwritten.path, ": ", unwritten.error))
    if row.verification is not None:
        _print_verification(console, title, row.verification)


def _print_verification(console: Console, title: str, result: Verification) -> None:
    if result.ok:
        console.print(
            _line(
                "verified",
                "green",
                title,
                f": {result.chunks_checked} chunk(s), {result.outputs_checked} output(s)"
                " as recorded",
            )
        )
        return
    console.print(
        _line(
            "damaged",
            "red",
            title,
            f": {result.chunks_missing} chunk(s) missing, {result.chunks_damaged} damaged"
            " (the next render makes them again)",
        )
    )
    for path in result.outputs_missing:
        console.print(_line("missing", "red", path, " (the next render writes it again)"))
    for path in result.outputs_damaged:
        console.print(_line("damaged", "red", path, " (the next render writes it again)"))


def print_report(report: RenderReport, *, log_format: str = "auto") -> None:
    if log_format == "json":
        data = report.run_summary.as_dict() if report.run_summary else {}
        if report.summary_path is not None:
            data["path"] = str(report.summary_path)
        reason = report.run_summary.reason if report.run_summary else ""
        JsonReporter(sys.stderr).write("summary", reason, data=data)
        return
    console = screen(sys.stderr)
    summary = report.summary
    console.print(
        f"rendered {summary.published} job(s), {summary.failed} failed, {summary.retried} retried,"
        f" {len(report.outputs)} file(s) written",
        markup=False,
        highlight=False,
    )
    for book, unit, error in report.failed:
        console.print(_line("failed", "red", book, " / ", unit, ": ", str(error)))
    for book, unit, error in report.set_aside:
        console.print(
            _line(
                "pending",
                "yellow",
                book,
                " / ",
                unit,
                ": ",
                str(error),
                " (transient: the next render tries it again)",
            )
        )
    for error in report.assembly_errors:
        console.print(_line("assembly failed", "red", error))
    if report.exit_code == 4:
        console.print("stopped at the time limit; run again to continue")
    if report.stop_reason:
        console.print(
            f"songbatch: stopped: {report.stop_reason}; the rest stays pending",
            markup=False,
            highlight=False,
        )
    if report.run_summary is not None:
        _print_run_summary(console, report.run_summary, report.summary_path)


def _print_run_summary(console: Console, run: RunSummary, path: Path | None) -> None:
    """The run in a few lines: for a cron mail, the same figures as the summary file."""
    jobs = run.jobs
    lines = [
        f"run {run.run_id}: {run.done_this_run} job(s) done, {run.failed_this_run} failed in"
        f" this run; {jobs['done']} done, {jobs['failed']} failed, {run.left} left in all;"
        f" {run.audio_minutes_this_run:.1f} min of audio in {format_span(run.wall_s)}",
    ]
    if run.devices:
        busy = ", ".join(f"{name} {d.busy_share:.0%}" for name, d in run.devices.items())
        lines.append(f"busy: {busy}")
    if run.spilled:
        lines.append(spilled_line(run.spilled))
    if run.spend_usd or run.reserved_usd:
        lines.append(f"spent ${run.spend_usd:.4f} (${run.reserved_usd:.4f} still reserved)")
    lines.append(f"exit {run.exit_code}: {run.reason}")
    if path is not None:
        lines.append(f"summary: {path}")
    for line in lines:
        console.print(Text(line))
