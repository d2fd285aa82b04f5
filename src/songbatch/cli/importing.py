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
from songbatch.importing.plan import ChapterStatus, ImportPlan


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
        reads = item.status in (ChapterStatus.NEW, ChapterStatus.KEPT)
        number += reads
        status = item.status.value
        if item.status is ChapterStatus.LEFT_OUT:
            status += f" ({item.chapter.matter})"
        elif item.text is not None:
            status += f", text {item.text.value}"
        table.add_row(
            str(number) if reads else "-",
            Text(item.chapter.title),
            f"{len(item.chapter.text):,}",
            f"~{speaking_minutes(len(item.chapter.text)):.0f}",
            Text(status, style="dim" if not reads else ""),
        )
    console.print(table)
    reading = [item for item in plan.chapters if item.status is not ChapterStatus.LEFT_OUT]
    chars = sum(len(item.chapter.text) for item in reading)
    console.print(Text(f"{len(reading)} chapter(s), about {speaking_minutes(chars):.0f} minutes"))
    for note in plan.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    if dry_run:
        console.print(Text("dry run: nothing written"))
    elif plan.manifest_text is None:
        console.print(Text(f"{plan.manifest}: has every chapter already; left as it is"))
    else:
        verb = "updated (your edits kept)" if plan.reimport else "written"
        console.print(Text(f"{plan.manifest}: {verb}; render it with `songbatch render`"))


_SPLITS = {
    "toc": "table of contents",
    "headings": "headings",
    "spine": "documents (no usable table of contents or headings)",
    "pattern": "lines matching --pattern",
    "whole": "whole text (no chapter headings found)",
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
        "manifest_written": not dry_run and plan.manifest_text is not None,
        "notes": list(plan.notes),
    }
