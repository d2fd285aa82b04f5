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
from songbatch.presets import Preset
from songbatch.preview import PreviewResult
from songbatch.quality import FileCheck, Measurement, Rule, RuleResult

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
            f"{would} {size_text(report.bytes_freed)} in {report.files_removed} file(s)"
            f" ({report.work_files} of them masters and streams);"
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


def _db(value: float, unit: str) -> str:
    return f"-inf {unit}" if value == float("-inf") else f"{value:.1f} {unit}"


def _measured(m: Measurement, meter: str | None) -> list[tuple[str, str, Rule | None]]:
    """(what, value, the rule that reads it) for each row of a file's table; the level rule
    reads the meter the preset names."""
    tags = ", ".join(f"{k}: {v}" for k, v in m.tags.items() if v) or "none"
    rows: list[tuple[str, str, Rule | None]] = [
        ("integrated loudness", _db(m.integrated_lufs, "LUFS"), _level(meter == "lufs")),
        ("RMS level", _db(m.rms_db, "dB"), _level(meter == "rms")),
        ("true peak", _db(m.true_peak_dbtp, "dBTP"), Rule.TRUE_PEAK),
        ("noise floor", _db(m.noise_floor_db, "dB RMS"), Rule.NOISE_FLOOR),
        ("head silence", f"{m.head_silence_s:.2f} s", Rule.HEAD_SILENCE),
        ("tail silence", f"{m.tail_silence_s:.2f} s", Rule.TAIL_SILENCE),
        ("sample rate", f"{m.sample_rate} Hz", Rule.SAMPLE_RATE),
        ("channels", str(m.channels), Rule.CHANNELS),
        ("codec", m.codec or "?", None),
        ("bitrate", "?" if m.bitrate_kbps is None else f"{m.bitrate_kbps:g} kbit/s", Rule.BITRATE),
        ("constant bit rate", {True: "yes", False: "no", None: "n/a"}[m.cbr], Rule.CBR),
        ("duration", f"{m.duration_s:.1f} s", None),
        ("tags", tags, None),
    ]
    if m.chapters is not None:
        rows.append(("chapters", str(len(m.chapters)), None))
    return rows


def _level(read: bool) -> Rule | None:
    return Rule.LEVEL if read else None


def _verdict(result: RuleResult | None) -> Text:
    if result is None:
        return Text("")
    if result.passed:
        return Text("PASS", style="green")
    return Text.assemble(("FAIL", "red"), f" (limit {result.limit})")


def print_check(checks: list[FileCheck], preset: Preset | None, *, as_json: bool) -> None:
    if as_json:
        _json(
            {
                "preset": None if preset is None else preset.name.value,
                "passed": all(item.passed for item in checks),
                "files": [item.as_dict() for item in checks],
            }
        )
        return
    console = screen(sys.stdout)
    for item in checks:
        by_rule = {result.rule: result for result in item.results}
        table = Table("measure", "value", "rule", title=Text(str(item.measurement.path)))
        meter = None if preset is None else preset.measure
        for what, value, rule in _measured(item.measurement, meter):
            result = None if rule is None else by_rule.get(rule)
            table.add_row(Text(what), Text(value), _verdict(result))
        console.print(table)
    failed = sum(not item.passed for item in checks)
    against = f" against {preset.name.value}" if preset else " (no preset: measured only)"
    console.print(Text(f"{len(checks)} file(s) checked{against}: {failed} failed"))
