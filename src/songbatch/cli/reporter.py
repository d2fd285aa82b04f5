"""How a run and its results look: rich progress on a terminal, timestamped lines elsewhere (cron,
CI, a pipe), JSON where asked."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from songbatch.events import RunEvent
from songbatch.render import Preview, RenderReport
from songbatch.status import ManifestStatus, Verification


def _clock(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class PlainReporter:
    """One timestamped line per event that a person reading a cron mail would want."""

    QUIET = frozenset({"job-started", "progress"})

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stream.flush()

    def observe(self, event: RunEvent) -> None:
        if event.kind in self.QUIET:
            return
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        parts = [stamp, event.kind]
        if event.worker:
            parts.append(event.worker)
        if event.job:
            parts.append(event.job[:12])
        if event.message:
            parts.append(event.message)
        if event.kind == "job-done":
            parts.append(
                f"{event.data['duration_ms'] / 1000:.1f} s audio in"
                f" {event.data['render_ms'] / 1000:.1f} s"
            )
        if event.kind == "planned":
            data = event.data
            parts.append(
                f"new={data['new']} reused={data['reused']} unchanged={data['unchanged']}"
                f" dropped={data['dropped']}"
            )
        if event.kind == "run-started":
            parts.append(f"{event.data['jobs']} job(s) on {event.data['workers']} worker(s)")
        if event.kind == "engine-loaded":
            parts.append(
                f"in {event.data['seconds']:.1f} s, up to {event.data['batch_limit']} job(s)"
                " per call"
            )
        with self._lock:
            self.stream.write(" ".join(parts) + "\n")
            self.stream.flush()


class RichReporter:
    """An overall bar and one line per device showing what it is rendering."""

    def __init__(self, stream: IO[str]) -> None:
        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
        )
        self._overall: TaskID | None = None
        self._devices: dict[str, TaskID] = {}

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

    def _device(self, name: str) -> TaskID:
        if name not in self._devices:
            self._devices[name] = self.progress.add_task(f"  {name}", total=None, note="")
        return self._devices[name]

    def observe(self, event: RunEvent) -> None:
        if event.kind == "run-started":
            self._overall = self.progress.add_task("jobs", total=event.data["jobs"], note="")
        elif event.kind == "job-started" and event.worker:
            self.progress.update(self._device(event.worker), note=f"rendering {event.job[:12]}")  # type: ignore[index]
        elif event.kind == "job-done" and event.worker:
            self.progress.update(self._device(event.worker), advance=1, note="idle")
            if self._overall is not None:
                self.progress.advance(self._overall)
        elif event.kind in {
            "job-failed",
            "job-set-aside",
            "worker-died",
            "warning",
            "assembly-failed",
            "deadline",
        }:
            who = f"{event.worker}: " if event.worker else ""
            self.console.print(f"[yellow]{event.kind}[/] {escape(who + event.message)}")
        elif event.kind == "output":
            self.console.print(f"[green]wrote[/] {escape(event.message)}")
        elif event.kind == "removed":
            self.console.print(f"[yellow]removed[/] {escape(event.message)}")


def make_reporter(stream: IO[str]) -> PlainReporter | RichReporter:
    return RichReporter(stream) if stream.isatty() else PlainReporter(stream)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_plan(previews: Sequence[Preview], *, as_json: bool) -> None:
    rows: list[dict[str, Any]] = []
    for item in previews:
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
    )
    for row in rows:
        table.add_row(
            row["title"],
            row["profile"],
            *(str(row[k]) for k in ("jobs", "new", "reused", "unchanged", "dropped", "chars")),
            _clock(row["est_ms"]),
        )
    Console().print(table)


def print_status(rows: Sequence[ManifestStatus], *, as_json: bool) -> None:
    if as_json:
        _print_json([row.as_dict() for row in rows])
        return
    if not rows:
        Console().print("nothing planned in this workspace yet")
        return
    table = Table(
        "manifest", "kind", "pending", "leased", "done", "failed", "rendered", "est. length"
    )
    for row in rows:
        table.add_row(
            row.title,
            row.kind,
            *(str(row.jobs[state]) for state in ("pending", "leased", "done", "failed")),
            _clock(row.rendered_ms),
            _clock(row.est_ms),
        )
    console = Console()
    console.print(table)
    for row in rows:
        title = escape(row.title)
        for failure in row.failed:
            unit, error = escape(failure["unit"]), escape(str(failure["error"]))
            console.print(f"[red]failed[/] {title} / {unit}: {error}")
        for pending in row.set_aside:
            unit, error = escape(pending["unit"]), escape(str(pending["error"]))
            console.print(
                f"[yellow]pending[/] {title} / {unit}: {error} (transient: the next render"
                " tries it again)"
            )
        for failure in row.output_failures:
            path, error = escape(failure["path"]), escape(failure["error"])
            console.print(f"[red]not written[/] {path}: {error}")
        if row.verification is not None:
            _print_verification(console, title, row.verification)


def _print_verification(console: Console, title: str, result: Verification) -> None:
    if result.ok:
        console.print(
            f"[green]verified[/] {title}: {result.chunks_checked} chunk(s),"
            f" {result.outputs_checked} output(s) as recorded"
        )
        return
    console.print(
        f"[red]damaged[/] {title}: {result.chunks_missing} chunk(s) missing,"
        f" {result.chunks_damaged} damaged (the next render makes them again)"
    )
    for path in result.outputs_missing:
        console.print(f"[red]missing[/] {escape(path)} (the next render writes it again)")
    for path in result.outputs_damaged:
        console.print(f"[red]damaged[/] {escape(path)} (the next render writes it again)")


def print_report(report: RenderReport) -> None:
    console = Console(stderr=True)
    summary = report.summary
    console.print(
        f"rendered {summary.published} job(s), {summary.failed} failed, {summary.retried} retried,"
        f" {len(report.outputs)} file(s) written"
    )
    for book, unit, error in report.failed:
        console.print(f"[red]failed[/] {escape(book)} / {escape(unit)}: {escape(str(error))}")
    for book, unit, error in report.set_aside:
        console.print(
            f"[yellow]pending[/] {escape(book)} / {escape(unit)}: {escape(str(error))}"
            " (transient: the next render tries it again)"
        )
    for error in report.assembly_errors:
        console.print(f"[red]assembly failed[/] {escape(error)}")
    if report.exit_code == 4:
        console.print("stopped at the time limit; run again to continue")
