"""Plain text -> chapters at lines that start one: "CHAPTER I.", "Chapter 12: The Storm",
"PROLOGUE", "12." or "XII" on a line of their own, or a pattern the person gives. The title
is the heading's own words, else the short line under it ("CHAPTER I." over "Down the
Rabbit-Hole"), else the heading ("Chapter I"). A table of contents before the first chapter
(several heading lines in one block, or headings with nothing under them) is not read."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from songbatch.importing.book import Book, Chapter, Metadata, SourceError, SplitMode, SplitOptions
from songbatch.importing.cleanup import (
    Vocabulary,
    chapter_text,
    join_lines,
    split_blocks,
    without_underscore_emphasis,
)
from songbatch.importing.gutenberg import unwrap
from songbatch.importing.matter import matter_of_title
from songbatch.importing.sections import BEFORE_FIRST

_UNITS = "one|two|three|four|five|six|seven|eight|nine"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_ORDINALS = "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth"
_NUMBER = (
    rf"(?:\d{{1,4}}|[IVXLCDM]+\b|(?:the\s+)?(?:{_ORDINALS}|last)\b"
    rf"|(?:{_TENS})(?:[- ](?:{_UNITS}))?\b|(?:{_TEENS}|{_UNITS}|hundred)\b)"
)
# The label and its number, then optionally a separator and the title.
_CHAPTER = re.compile(
    rf"(?i)\s*(?P<label>(?:chapter|chap\.|part|book|volume)\s+{_NUMBER})"
    r"(?P<separator>\s*[.:—–-]+\s*|\s+)?(?P<title>.*?)\s*"
)
_SPECIAL = re.compile(
    r"(?i)\s*(?P<label>prologue|epilogue|preface|foreword|introduction|afterword|interlude"
    r"|conclusion|appendix(?:\s+[A-Z0-9]+)?)\s*[.:]?\s*"
)
_NUMBERED = re.compile(r"\s*(?P<label>\d{1,3})(?:\.?|\.\s+(?P<title>[^\W\d_][^\n]{0,78}))\s*")
_ROMAN = re.compile(r"\s*(?P<label>[IVXLC]{1,7})(?:\.?|\.\s+(?P<title>[^\W\d_][^\n]{0,78}))\s*")
_MAX_TITLE = 80
_SMALL_WORDS = frozenset(
    {"a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "nor", "of", "on"}
    | {"or", "the", "to", "with"}
)


@dataclass
class _Section:
    title: str | None
    blocks: list[list[str]] = field(default_factory=list)
    matter: str | None = None


Match = Callable[[str], "tuple[str, str | None] | None"]  # a line -> (label, title)


@dataclass(frozen=True)
class _Heading:
    match: Match
    # A bare number ("12.", "XII") is a heading only on its own (its title under it at most):
    # with text after it in the same block it is more likely a list or a verse's number.
    alone: bool = False


def read_text(path: Path, text: str, options: SplitOptions) -> Book:
    unwrapped = unwrap(text)
    metadata = unwrapped.metadata
    if metadata.title is None:
        metadata = Metadata(title=_book_title(path), language=metadata.language)
    body, vocabulary = _body(unwrapped.body)
    sections, split = _sections(path, split_blocks(body), options)
    chapters = []
    for section in sections:
        words = _words(section.blocks, vocabulary)
        if words:
            title = section.title or (section.matter or "").capitalize() or metadata.title or ""
            chapters.append(Chapter(title, words, section.matter or matter_of_title(title)))
    return Book(path, "text", split, metadata, tuple(chapters))


def read_text_chapter(text: str) -> tuple[str | None, str, Metadata]:
    """A file holding one chapter: the title its opening heading gives ("CHAPTER I. Down the
    Rabbit-Hole", "Chapter 3: X", "PROLOGUE"; None without one), its text with that heading
    left out, and the book's fields from a Project Gutenberg header around it."""
    unwrapped = unwrap(text)
    body, vocabulary = _body(unwrapped.body)
    blocks = split_blocks(body)
    for heading in _HEADINGS:
        found = _heading_at(blocks, 0, heading)
        if found is not None:
            title, rest, after = found
            return title, _words([rest, *blocks[after:]], vocabulary), unwrapped.metadata
    return None, _words(blocks, vocabulary), unwrapped.metadata


def _body(text: str) -> tuple[str, Vocabulary]:
    body = without_underscore_emphasis(text)
    return body, Vocabulary(body)


def _words(blocks: list[list[str]], vocabulary: Vocabulary) -> str:
    return chapter_text(join_lines(lines, vocabulary) for lines in blocks if lines)


def _sections(
    path: Path, blocks: list[list[str]], options: SplitOptions
) -> tuple[list[_Section], str]:
    if options.mode is SplitMode.TOC:
        raise SourceError(path, "--split toc needs an EPUB's table of contents; try headings")
    if options.mode is SplitMode.PATTERN:
        assert options.pattern is not None
        return _split(blocks, _Heading(_pattern_heading(options.pattern))), "pattern"
    for heading in _HEADINGS:
        sections = _split(blocks, heading)
        if sum(1 for section in sections if section.title is not None and section.blocks) > 1:
            return sections, "headings"
    if options.mode is SplitMode.HEADINGS:
        raise SourceError(path, 'has no chapter headings ("CHAPTER I.", "12."): try --pattern')
    return [_Section(None, blocks, None)], "whole"


def _split(blocks: list[list[str]], heading: _Heading) -> list[_Section]:
    sections = [_Section(None, matter=BEFORE_FIRST)]
    i = 0
    while i < len(blocks):
        found = _heading_at(blocks, i, heading)
        if found is None:
            sections[-1].blocks.append(blocks[i])
            i += 1
            continue
        title, rest, i = found
        section = _Section(title)
        if rest:
            section.blocks.append(rest)
        sections.append(section)
    return sections


def _heading_at(
    blocks: list[list[str]], i: int, heading: _Heading
) -> tuple[str, list[str], int] | None:
    """When block `i` opens with a heading: its title as shown (the title line under a bare
    heading taken with it), the block's lines that are text, and the index of the next block."""
    if i >= len(blocks):
        return None
    found = _heading_block(blocks[i], heading)
    if found is None:
        return None
    label, title, rest = found
    i += 1
    if title is None and not rest and i < len(blocks) and _is_title_line(blocks[i], heading):
        title = blocks[i][0].strip()
        i += 1
    return _display(title or label), rest, i


def _heading_block(lines: list[str], heading: _Heading) -> tuple[str, str | None, list[str]] | None:
    """(label, title, the block's lines that are text) when the block opens with a heading.
    A block of several heading lines is a table of contents, not a heading."""
    found = heading.match(lines[0])
    if found is None or sum(1 for line in lines if heading.match(line)) > 1:
        return None
    label, title = found
    rest = lines[1:]
    if title is None and 0 < len(rest) <= 2 and all(len(line) <= _MAX_TITLE for line in rest):
        return label, " ".join(" ".join(rest).split()), []
    if rest and heading.alone:
        return None
    return label, title, rest


def _is_title_line(lines: list[str], heading: _Heading) -> bool:
    """The block under a bare heading is its title when it reads as one: a single short line,
    capitalised, not ending a sentence with a full stop or comma."""
    line = lines[0].strip()
    words = re.findall(r"[^\W\d_]+", line)
    capitalised = [word for word in words if word[0].isupper() or word.lower() in _SMALL_WORDS]
    return (
        len(lines) == 1
        and 0 < len(line) <= _MAX_TITLE
        and heading.match(line) is None
        and line[0].isupper()
        and not line.endswith((".", ",", ";", ":"))
        and len(capitalised) == len(words)
    )


def _chapter_heading(line: str) -> tuple[str, str | None] | None:
    match = _CHAPTER.fullmatch(line) or _SPECIAL.fullmatch(line)
    if match is None:
        return None
    title = match.groupdict().get("title") or None
    # "Chapter five was the best," is a sentence, not a heading: a title is short, and
    # capitalised unless a separator ("Chapter 5: the storm") sets it off.
    if title is not None and (
        len(title) > _MAX_TITLE
        or title.endswith((",", ";"))
        or (title[0].islower() and not match.group("separator").strip())
    ):
        return None
    return _display(match.group("label")), title


def _numbered_heading(line: str) -> tuple[str, str | None] | None:
    match = _NUMBERED.fullmatch(line) or _SPECIAL.fullmatch(line)
    if match is None:
        return None
    return _display(match.group("label")), match.groupdict().get("title")


def _roman_heading(line: str) -> tuple[str, str | None] | None:
    match = _ROMAN.fullmatch(line) or _SPECIAL.fullmatch(line)
    if match is None:
        return None
    return _display(match.group("label")), match.groupdict().get("title")


def _pattern_heading(pattern: re.Pattern[str]) -> Match:
    def heading(line: str) -> tuple[str, str | None] | None:
        match = pattern.match(line.strip())
        if match is None:
            return None
        named = match.groupdict().get("title")
        return line.strip(), (" ".join(named.split()) if named else None)

    return heading


_HEADINGS = (
    _Heading(_chapter_heading),
    _Heading(_numbered_heading, alone=True),
    _Heading(_roman_heading, alone=True),
)


def _display(title: str) -> str:
    """A title as a chapter mark shows it: spaces collapsed, a closing full stop dropped,
    capitals ("DOWN THE RABBIT-HOLE") in title case with Roman numerals kept."""
    title = " ".join(title.split()).rstrip(".").strip()
    return title_cased(title) if title.isupper() else title


def title_cased(title: str) -> str:
    """ "the pool of tears" or "THE POOL OF TEARS" -> "The Pool of Tears"."""
    words = title.split(" ")
    return " ".join(_title_case(word, first=i == 0) for i, word in enumerate(words))


def _title_case(word: str, *, first: bool) -> str:
    if re.fullmatch(r"[IVXLCDM]+[.:]?", word):
        return word
    lower = word.lower()
    if not first and lower in _SMALL_WORDS:
        return lower
    # "ALICE'S" -> "Alice's", "RABBIT-HOLE" -> "Rabbit-Hole".
    return re.sub(
        r"[^\W\d_]+(?:['’][^\W\d_]+)*", lambda m: m.group()[0].upper() + m.group()[1:], lower
    )


def _book_title(path: Path) -> str:
    words = re.sub(r"[_\-]+", " ", path.stem).strip()
    return words[:1].upper() + words[1:] if words else path.name
