"""Where an import's files go and what the manifest it writes says. `-o book.yaml` puts the
chapter texts in `book/` beside it (`book/01-down-the-rabbit-hole.txt`) and the cover there
too (`book/cover.jpg`); the manifest names them relative to itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

from songbatch.importing.book import Book, Metadata
from songbatch.manifest import slugify

# Plain YAML scalars that the strict loader reads as text and that look it; anything else is
# written double-quoted (JSON's string syntax is YAML's).
_PLAIN = re.compile(r"[^\W\d_][\w .,'!?()&/-]*(?<! )")
_NOT_TEXT = frozenset({"yes", "no", "on", "off", "y", "n", "true", "false", "null"})
_FIELD_ORDER = (
    "title",
    "subtitle",
    "author",
    "language",
    "year",
    "publisher",
    "series",
    "series_part",
    "isbn",
    "description",
)


def chapter_folder(manifest: Path) -> Path:
    return manifest.parent / manifest.stem


def chapter_file_name(number: int, count: int, title: str) -> str:
    width = max(2, len(str(count)))
    return f"{number:0{width}d}-{slugify(title, max_bytes=60)}.txt"


def relative(manifest: Path, path: Path) -> str:
    """`path` as the manifest names it: relative to its folder, with forward slashes."""
    return path.relative_to(manifest.parent).as_posix()


def yaml_text(value: str) -> str:
    if _PLAIN.fullmatch(value) and value.lower() not in _NOT_TEXT:
        return value
    return json.dumps(value, ensure_ascii=False)


def chapter_entry(title: str, text_file: str, indent: str = "  ") -> str:
    """One `chapters:` item, as the manifest writes it and as a re-import adds it."""
    return f"{indent}- title: {yaml_text(title)}\n{indent}  text_file: {yaml_text(text_file)}\n"


def manifest_text(book: Book, chapters: list[tuple[str, str]], cover: str | None) -> str:
    """A new manifest: the book's fields, its cover, and `chapters` as (title, text_file)."""
    lines = [
        f"# Imported from {book.source.name} by `songbatch import`. Edit freely: importing",
        "# again into this file keeps your edits and only adds chapters it does not have yet",
        "# (see docs/import.md). Every field is described in docs/manifest.md.",
        "kind: audiobook",
    ]
    lines += _metadata_lines(book.metadata)
    if cover is not None:
        lines.append(f"cover: {yaml_text(cover)}")
    lines += [
        "# profile: offline   # a first listen on any CPU (espeak-ng); without it: local (a GPU)",
        "",
        "chapters:",
    ]
    body = "\n".join(lines) + "\n"
    return body + "".join(chapter_entry(title, path) for title, path in chapters)


def _metadata_lines(metadata: Metadata) -> list[str]:
    values = {name: getattr(metadata, name) for name in _FIELD_ORDER}
    values["author"] = values["author"] or "Unknown"  # required; the notes ask for the real one
    lines = []
    for name in _FIELD_ORDER:
        value = values[name]
        if value is None:
            continue
        lines.append(f"{name}: {value if isinstance(value, int) else yaml_text(str(value))}")
    return lines
