"""New chapters written into a person's manifest without touching anything else in it: the
YAML is edited as text, entries inserted between the lines of the `chapters:` list, so their
comments, key order, quoting and every field they added stay byte for byte."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from songbatch.errors import InputError
from songbatch.importing.layout import chapter_entry


@dataclass(frozen=True)
class NewEntry:
    after: int | None  # index of the manifest's chapter it follows; None: before the first
    title: str
    text_file: str


def insert_chapters(text: str, entries: list[NewEntry], shown: str) -> str:
    """`text` (a manifest that loads) with `entries` added to its `chapters:` list."""
    if not entries:
        return text
    starts, dash, key = _chapter_items(text, shown)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    spacing = " " * max(key - dash - 2, 0)
    inserts: dict[int, list[str]] = {}
    for entry in entries:
        at = starts[0] if entry.after is None else _end_of_item(lines, starts[entry.after], dash)
        block = chapter_entry(entry.title, entry.text_file, " " * dash)
        inserts.setdefault(at, []).append(block.replace("- ", "- " + spacing, 1))
    out = []
    for i, line in enumerate([*lines, ""]):
        out.extend(inserts.get(i, []))
        out.append(line)
    return "".join(out)


def _chapter_items(text: str, shown: str) -> tuple[list[int], int, int]:
    """The line (0-based) of each chapter item's dash, the dash's column and the column of
    the first item's first key."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    pairs = root.value if isinstance(root, yaml.MappingNode) else []
    sequence = next((value for key, value in pairs if key.value == "chapters"), None)
    if not isinstance(sequence, yaml.SequenceNode) or sequence.flow_style or not sequence.value:
        raise InputError(
            f"{shown}: chapters is not a block list (`- title: ...` lines): importing again"
            " adds chapters to one; write it so, or import into another file with -o"
        )
    dashes = [text.rfind("-", 0, node.start_mark.pointer) for node in sequence.value]
    starts = [text.count("\n", 0, at) for at in dashes]
    dash = dashes[0] - (text.rfind("\n", 0, dashes[0]) + 1)
    first = sequence.value[0].start_mark
    key = first.column if first.line == starts[0] else dash + 2
    return starts, dash, key


def _end_of_item(lines: list[str], start: int, dash: int) -> int:
    """The line after the item whose dash is on line `start`: its content is every line
    indented deeper than the dash; blank lines and outer comments after it stay with what
    follows."""
    end = start + 1
    while end < len(lines) and _inside(lines[end], dash):
        end += 1
    while end > start + 1 and _blank_or_outer_comment(lines[end - 1], dash):
        end -= 1
    return end


def _inside(line: str, dash: int) -> bool:
    stripped = line.lstrip(" ")
    return not stripped.strip() or stripped.startswith("#") or len(line) - len(stripped) > dash


def _blank_or_outer_comment(line: str, dash: int) -> bool:
    stripped = line.lstrip(" ")
    if not stripped.strip():
        return True
    return stripped.startswith("#") and len(line) - len(stripped) <= dash
