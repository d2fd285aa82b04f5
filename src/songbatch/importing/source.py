"""A source -> a Book: a file by its extension (.epub, .md/.markdown, .txt), a folder as one
chapter per file. Every way a source can be unusable (missing, empty, not a book, no text) is
a SourceError naming the file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from songbatch.importing.book import Book, SourceError, SplitOptions
from songbatch.importing.epub import read_epub
from songbatch.importing.fields import checked_metadata
from songbatch.importing.folder import read_folder
from songbatch.importing.markdown import read_markdown
from songbatch.importing.plaintext import read_text
from songbatch.importing.textfile import decoded_text, source_bytes
from songbatch.yamlstrict import special_file_problem

KINDS = {".epub": "epub", ".md": "markdown", ".markdown": "markdown", ".txt": "text"}


def read_book(path: Path, options: SplitOptions, *, include_matter: bool = False) -> Book:
    """The book at `path` (a file, or a folder of chapter files), its metadata held to the
    manifest's rules; it has at least one chapter to read (with `include_matter`, counting
    front and back matter)."""
    if not path.exists():
        raise SourceError(path, "not found")
    book = read_folder(path, options) if path.is_dir() else _read_file(path, options)
    if not book.chapters_to_read(include_matter):
        raise SourceError(path, "has no text to read" + _matter_hint(book, include_matter))
    metadata, notes = checked_metadata(book.metadata)
    if metadata.title is None:  # required by the manifest; the file's name is what is known
        metadata = replace(metadata, title=path.stem)
    return replace(book, metadata=metadata, notes=book.notes + tuple(notes))


def _read_file(path: Path, options: SplitOptions) -> Book:
    kind = KINDS.get(path.suffix.lower())
    problem = special_file_problem(path)
    if problem is not None:
        raise SourceError(path, problem)
    if kind is None:
        known = ", ".join(sorted(KINDS))
        raise SourceError(
            path,
            f"unknown kind of book ({path.suffix or 'no extension'}); songbatch imports {known}"
            " or a folder of .txt/.md chapter files",
        )
    data = source_bytes(path)
    if not data.strip():
        raise SourceError(path, "is empty")
    if kind == "epub":
        return read_epub(path, options)
    text, note = decoded_text(path, data)
    book = (read_markdown if kind == "markdown" else read_text)(path, text, options)
    return replace(book, notes=book.notes + ((note,) if note else ()))


def _matter_hint(book: Book, include_matter: bool) -> str:
    if include_matter or not book.chapters:
        return ""
    return f" (only front and back matter: {len(book.chapters)} section(s); see --include-matter)"
