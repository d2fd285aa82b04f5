"""What an import reads out of a source, before anything is written: the book's metadata, its
cover and its chapters (front and back matter among them, marked), all plain data."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from songbatch.errors import InputError
from songbatch.profiles import EngineConfig

# The speech rate `songbatch plan` assumes for a voice it has not measured (about 150 words a
# minute): the dry run's minutes are the same estimate a plan of the manifest would give.
CHARS_PER_SECOND: float = EngineConfig.model_fields["chars_per_second"].default


class SourceError(InputError):
    """The source cannot be imported (not a book, damaged, DRM-protected): nothing was written."""

    def __init__(self, source: Path, message: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


class SplitMode(str, Enum):
    """Where chapters start: `auto` picks the first of toc, headings, pattern-free heuristics
    that finds more than one chapter."""

    AUTO = "auto"
    TOC = "toc"  # an EPUB's navigation document (EPUB 3) or NCX (EPUB 2)
    HEADINGS = "headings"  # HTML or Markdown headings; chapter lines ("CHAPTER I.") in text
    PATTERN = "pattern"  # a line (a paragraph's first) matching the given regular expression


@dataclass(frozen=True)
class SplitOptions:
    mode: SplitMode = SplitMode.AUTO
    pattern: re.Pattern[str] | None = None  # required for SplitMode.PATTERN


@dataclass(frozen=True)
class Metadata:
    """The manifest fields a source can fill; None where it says nothing (or nothing valid)."""

    title: str | None = None
    author: str | None = None
    language: str | None = None
    description: str | None = None
    year: int | None = None
    publisher: str | None = None
    series: str | None = None
    series_part: str | None = None
    subtitle: str | None = None
    isbn: str | None = None


@dataclass(frozen=True)
class Cover:
    data: bytes
    extension: str  # ".jpg" or ".png": what the manifest's `cover:` accepts


@dataclass(frozen=True)
class Chapter:
    title: str
    text: str  # paragraphs joined by a blank line, one line each: the text files' form
    # Why this is front or back matter ("copyright", "contents", ...), left out unless asked
    # for; None for the book's own text.
    matter: str | None = None


@dataclass(frozen=True)
class Skipped:
    name: str  # the file's name in its folder
    reason: str  # "not a chapter (a read-me)", "empty", ...


@dataclass(frozen=True)
class Book:
    source: Path
    kind: str  # "epub", "markdown", "text" or "folder"
    # How the chapters were found: "toc", "headings", "spine", "pattern", "whole", "files".
    split: str
    metadata: Metadata
    chapters: tuple[Chapter, ...]  # every section found, matter included, in reading order
    cover: Cover | None = None
    notes: tuple[str, ...] = field(default=())  # what a person may want to check or set
    skipped: tuple[Skipped, ...] = field(default=())  # a folder's files that are not chapters

    def chapters_to_read(self, include_matter: bool) -> list[Chapter]:
        return [c for c in self.chapters if include_matter or c.matter is None]


def speaking_minutes(chars: int) -> float:
    return chars / CHARS_PER_SECOND / 60
