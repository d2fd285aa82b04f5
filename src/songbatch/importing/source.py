"""A source file -> a Book, by its extension: .epub, .md/.markdown, .txt. Every way a source
can be unusable (missing, empty, not a book, no text) is a SourceError naming the file."""

from __future__ import annotations

import codecs
from dataclasses import replace
from pathlib import Path

from songbatch.importing.book import Book, SourceError, SplitOptions
from songbatch.importing.epub import read_epub
from songbatch.importing.fields import checked_metadata
from songbatch.importing.markdown import read_markdown
from songbatch.importing.plaintext import read_text
from songbatch.yamlstrict import special_file_problem

KINDS = {".epub": "epub", ".md": "markdown", ".markdown": "markdown", ".txt": "text"}


def read_book(path: Path, options: SplitOptions, *, include_matter: bool = False) -> Book:
    """The book at `path`, its metadata held to the manifest's rules; it has at least one
    chapter to read (with `include_matter`, counting front and back matter)."""
    kind = KINDS.get(path.suffix.lower())
    if not path.exists():
        raise SourceError(path, "not found")
    problem = special_file_problem(path)
    if problem is not None:
        raise SourceError(path, problem)
    if kind is None:
        known = ", ".join(sorted(KINDS))
        raise SourceError(
            path,
            f"unknown kind of book ({path.suffix or 'no extension'}); songbatch imports {known}",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(path, f"cannot be read: {exc.strerror or exc}") from None
    if not data.strip():
        raise SourceError(path, "is empty")
    if kind == "epub":
        book = read_epub(path, options)
    else:
        text, note = _decoded(path, data)
        book = (read_markdown if kind == "markdown" else read_text)(path, text, options)
        book = replace(book, notes=book.notes + ((note,) if note else ()))
    if not book.chapters_to_read(include_matter):
        raise SourceError(path, "has no text to read" + _matter_hint(book, include_matter))
    metadata, notes = checked_metadata(book.metadata)
    if metadata.title is None:  # required by the manifest; the file's name is what is known
        metadata = replace(metadata, title=path.stem)
    return replace(book, metadata=metadata, notes=book.notes + tuple(notes))


def _matter_hint(book: Book, include_matter: bool) -> str:
    if include_matter or not book.chapters:
        return ""
    return f" (only front and back matter: {len(book.chapters)} section(s); see --include-matter)"


def _decoded(path: Path, data: bytes) -> tuple[str, str | None]:
    """Text from UTF-8 (a BOM allowed) or UTF-16 with its BOM; else Windows-1252, which older
    Project Gutenberg files are in (a note says so: the text files written are UTF-8)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(
            "cp1252", errors="replace"
        ), f"{path.name} is not UTF-8: read as Windows-1252"
    if "\x00" in text:
        raise SourceError(path, "contains NUL bytes: not a text file (UTF-16 without a BOM?)")
    return text, None
