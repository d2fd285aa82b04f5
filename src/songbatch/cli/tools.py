"""How `doctor`, `gc` and `preview` print: a table or JSON; user text (paths, messages) as rich
`Text`, never markup."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

from rich.table import Table
from rich.text import Text

from songbatch.cli.reporter import screen
from songbatch.doctor import DoctorReport
from songbatch.gc import GcReport
from songbatch.preview import PreviewResult

_STYLES = {"ok": "green", "warn": "yellow", "fail": "red", "info": "dim"}


def _json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def size_text(size: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def print_doctor(report: DoctorReport, *, as_json: bool) -> None:
    if as_json:
        _json(report.as_dict())
        return
    console = screen(sys.stdout)
    table = Table("check", "state", "found", "for " + report.profile)
    for check in report.checks:
        table.add_row(
            Text(check.name),
            Text(check.state, style=_STYLES[check.state]),
            Text(check.detail),
            "needed" if check.needed else "",
        )
    console.print(table)
    for check in report.checks:
        if check.state in ("fail", "warn") and check.fix:
            console.print(
                Text.assemble((check.state, _STYLES[check.state]), " ", check.name, ": ", check.fix)
            )
    verdict = "can run" if report.can_run else "cannot run"
    console.print(Text(f"profile {report.profile} {verdict} here"))


def print_gc(report: GcReport, *, as_json: bool) -> None:
    if as_json:
        _json(asdict(report))
        return
    console = screen(sys.stdout)
    would = "would free" if report.dry_run else "freed"
    console.print(
        Text(
            f"{would} {size_text(report.bytes_freed)} in {report.files_removed} chunk file(s);"
            f" {report.jobs_dropped} unplanned job row(s) {'to drop' if report.dry_run else 'gone'}"
            f", {report.kept_jobs} planned job(s) kept"
        )
    )
    if report.paid_kept:
        console.print(
            Text(
                f"{report.paid_kept} paid job row(s) kept for their budget reservations"
                " (their files go)"
            )
        )
    for path in report.missing_manifests:
        forgotten = path in report.forgotten_manifests
        note = "forgotten" if forgotten else "kept as planned (--forget-missing drops its jobs)"
        console.print(Text.assemble(("missing", "yellow"), " ", path, f": {note}"))
    for error in report.errors:
        console.print(Text.assemble(("error", "red"), " ", error))


def print_preview(result: PreviewResult) -> None:
    console = screen(sys.stdout)
    console.print(
        Text(
            f"{result.path} ({result.duration_ms / 1000:.1f} s): {result.jobs} job(s),"
            f" {result.rendered} rendered now, {result.cached} from the cache"
        )
    )
