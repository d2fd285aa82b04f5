"""How `songbatch import` prints: the chapter table (a dry run's whole output), what was
written, and the notes a person may want to act on; or JSON. User text as rich `Text`."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.table import Table
from rich.text import Text

from songbatch.cli.reporter import screen
from songbatch.importing.book import speaking_minutes
from songbatch.importing.plan import ChapterStatus, FileState, ImportPlan, PlannedChapter


def print_import(plan: ImportPlan, *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(_as_dict(plan, dry_run), indent=2, ensure_ascii=False) + "\n")
        return
    console = screen(sys.stdout)
    book = plan.book
    console.print(
        Text(
            f"{book.metadata.title} by {book.metadata.author or 'an unknown author'}:"
            f" {book.kind}, chapters from its {_SPLITS[book.split]}"
        )
    )
    table = Table("#", "title", "characters", "minutes", "status")
    number = 0
    for item in plan.chapters:
        reads = item.status in _READ
        number += reads
        table.add_row(
            str(number) if reads else "-",
            Text(item.chapter.title),
            f"{len(item.chapter.text):,}",
            _minutes(len(item.chapter.text)),
            Text(_status(item), style="" if reads else "dim"),
        )
    console.print(table)
    chars = sum(len(item.chapter.text) for item in plan.chapters if item.status in _READ)
    console.print(Text(f"{number} chapter(s) to read, {_minutes(chars)} minutes"))
    for skipped in book.skipped:
        console.print(Text(f"skipped {skipped.name}: {skipped.reason}", style="dim"))
    for note in plan.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    if dry_run:
        console.print(Text("dry run: nothing written"))
    elif plan.manifest_text is None:
        console.print(Text(f"{plan.manifest}: has every chapter already; left as it is"))
    else:
        verb = "updated (your edits kept)" if plan.reimport else "written"
        console.print(Text(f"{plan.manifest}: {verb}; render it with `songbatch render`"))


_READ = (ChapterStatus.NEW, ChapterStatus.KEPT)


def _status(item: PlannedChapter) -> str:
    if item.status is ChapterStatus.LEFT_OUT:
        return f"{item.status.value} ({item.chapter.matter})"
    if item.text is None or item.text is FileState.NEW:
        return str(item.status.value)
    return f"{item.status.value}, text {item.text.value}"


def _minutes(chars: int) -> str:
    minutes = speaking_minutes(chars)
    return f"~{minutes:.1f}" if minutes < 10 else f"~{minutes:.0f}"


_SPLITS = {
    "toc": "table of contents",
    "headings": "headings",
    "spine": "documents (no usable table of contents or headings)",
    "pattern": "lines matching --pattern",
    "whole": "whole text (no chapter headings found)",
    "files": "files, one chapter each",
}


def _as_dict(plan: ImportPlan, dry_run: bool) -> dict[str, Any]:
    metadata = plan.book.metadata
    return {
        "source": str(plan.book.source),
        "manifest": str(plan.manifest),
        "dry_run": dry_run,
        "split": plan.book.split,
        "metadata": {k: v for k, v in vars(metadata).items() if v is not None},
        "chapters": [
            {
                "title": item.chapter.title,
                "characters": len(item.chapter.text),
                "minutes": round(speaking_minutes(len(item.chapter.text)), 1),
                "status": item.status.value,
                "matter": item.chapter.matter,
                "text_file": None if item.file is None else str(item.file),
                "text": None if item.text is None else item.text.value,
            }
            for item in plan.chapters
        ],
        "skipped": [{"file": s.name, "reason": s.reason} for s in plan.book.skipped],
        "manifest_written": not dry_run and plan.manifest_text is not None,
        "notes": list(plan.notes),
    }
