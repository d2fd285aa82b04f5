"""A folder of chapter files (.txt, .md) -> one book: a chapter per file in natural order
("2.txt" before "10.txt"), each read with the plain text or Markdown clean-up and titled by
its opening heading, else by its file name ("03-the-pool-of-tears.txt" -> "The Pool of
Tears"). Files that are not chapters (a read-me, a licence, hidden or empty files, other
kinds) are skipped and listed; the book's fields come from a Gutenberg header or front matter
in its files, else from the folder's name."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from pathlib import Path

from songbatch.importing.book import (
    Book,
    Chapter,
    Metadata,
    Skipped,
    SourceError,
    SplitMode,
    SplitOptions,
)
from songbatch.importing.markdown import read_markdown_chapter
from songbatch.importing.matter import matter_of_title
from songbatch.importing.plaintext import read_text_chapter, title_cased
from songbatch.importing.textfile import decoded_text, source_bytes
from songbatch.yamlstrict import special_file_problem

CHAPTER_EXTENSIONS = (".txt", ".md", ".markdown")
# Names (without extension, any case) of the files a folder of text carries beside its
# chapters, as repositories and archives do.
_NOT_CHAPTERS = {
    "readme": "a read-me",
    "license": "a licence",
    "licence": "a licence",
    "copying": "a licence",
    "notice": "a licence notice",
    "changelog": "a change log",
    "changes": "a change log",
    "contributing": "contribution notes",
    "authors": "a list of authors",
}
_LEADING_NUMBER = re.compile(r"^\s*(\d+)[\s._-]*")


def read_folder(folder: Path, options: SplitOptions) -> Book:
    if options.mode is not SplitMode.AUTO:
        raise SourceError(
            folder,
            f"is a folder: each file is one chapter; --split {options.mode.value} applies to a"
            " single file",
        )
    entries = sorted(folder.iterdir(), key=lambda entry: natural_key(entry.name))
    if not entries:
        raise SourceError(folder, "is an empty folder")
    chapters: list[Chapter] = []
    skipped: list[Skipped] = []
    notes: list[str] = []
    metadata = Metadata()
    for entry in entries:
        reason = _not_a_chapter(entry)
        if reason is not None:
            skipped.append(Skipped(entry.name, reason))
            continue
        read = _read_chapter(entry, notes)
        if read is None:
            skipped.append(Skipped(entry.name, "empty"))
            continue
        chapter, found = read
        chapters.append(chapter)
        metadata = _filled(metadata, found)
    if not chapters:
        raise SourceError(folder, _no_chapters(skipped))
    if metadata.title is None:
        name = folder.resolve().name  # "." is a folder with a name too
        metadata = replace(metadata, title=_name_title(name) or name)
    return Book(
        folder,
        "folder",
        "files",
        metadata,
        tuple(chapters),
        notes=tuple(notes),
        skipped=tuple(skipped),
    )


def natural_key(name: str) -> tuple[str | int, ...]:
    """A sort key that orders numbers in names by value: "2.txt" before "10.txt". The parts
    alternate text and number, text first, so two keys compare part by part of one kind."""
    parts = re.split(r"(\d+)", name.casefold())
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def _not_a_chapter(entry: Path) -> str | None:
    if entry.name.startswith("."):
        return "hidden"
    if entry.is_dir():
        return "a folder"
    if entry.stem.casefold() in _NOT_CHAPTERS:
        return f"not a chapter ({_NOT_CHAPTERS[entry.stem.casefold()]})"
    if entry.suffix.lower() not in CHAPTER_EXTENSIONS:
        return f"not a text file ({entry.suffix or 'no extension'})"
    return None


def _read_chapter(path: Path, notes: list[str]) -> tuple[Chapter, Metadata] | None:
    """The chapter in `path` and the book's fields it gives; None when it has nothing to read."""
    problem = special_file_problem(path)
    if problem is not None:
        raise SourceError(path, problem)
    data = source_bytes(path)
    if not data.strip():
        return None
    text, note = decoded_text(path, data)
    if note is not None:
        notes.append(note)
    if path.suffix.lower() == ".txt":
        heading, words, metadata = read_text_chapter(text)
    else:
        heading, words, metadata = read_markdown_chapter(path, text)
    if not words:
        return None
    title = heading or _name_title(path.stem) or path.stem
    return Chapter(title, words, matter_of_title(title)), metadata


def _name_title(stem: str) -> str | None:
    """A chapter's title from its file's name: the number that orders it and the separators
    dropped, words in title case ("03-the-pool-of-tears" -> "The Pool of Tears", "7" ->
    "Chapter 7"); None when the name has neither words nor a number."""
    number = _LEADING_NUMBER.match(stem)
    words = " ".join(re.sub(r"[_\-.]+", " ", stem[number.end() if number else 0 :]).split())
    if words:
        return title_cased(words)
    return None if number is None else f"Chapter {int(number.group(1))}"


def _filled(metadata: Metadata, found: Metadata) -> Metadata:
    """`metadata` with the fields it lacks taken from `found` (an earlier file's word stands)."""
    missing = {
        f.name: getattr(found, f.name)
        for f in fields(Metadata)
        if getattr(metadata, f.name) is None and getattr(found, f.name) is not None
    }
    return replace(metadata, **missing)


def _no_chapters(skipped: list[Skipped]) -> str:
    if not any(s.name.lower().endswith(CHAPTER_EXTENSIONS) for s in skipped):
        return "has no .txt or .md files to read as chapters"
    listed = ", ".join(f"{s.name} ({s.reason})" for s in skipped)
    return f"has no chapter files to read (skipped: {listed})"
