"""Markdown (CommonMark, through markdown-it-py) -> chapters at its headings: the top level
that gives more than one (a single `#` book title over `##` chapters splits at `##`). What a
voice cannot read is left out: code, images, HTML, footnote markers and footnotes. A YAML
front matter block (`title:`, `author:`, ...) gives the metadata."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from songbatch.errors import ManifestError
from songbatch.importing.book import Book, Metadata, SourceError, SplitMode, SplitOptions
from songbatch.importing.cleanup import Vocabulary, join_lines
from songbatch.importing.fields import year_of
from songbatch.importing.sections import (
    Block,
    Section,
    chapters_of,
    split_at_headings,
    split_at_pattern,
)
from songbatch.yamlstrict import parse_yaml

_FRONT_MATTER = re.compile(
    r"\A(?:\ufeff)?---[^\S\n]*\n(.*?\n)(?:---|\.\.\.)[^\S\n]*(?:\n|\Z)", re.S
)
# Footnotes (a Markdown extension CommonMark reads as links or text): `[^1]` markers and
# `[^1]: the note` definitions with their indented continuation lines.
_FOOTNOTE_DEFINITION = re.compile(r"^\[\^[^\]\n]+\]:.*(?:\n(?:[ \t]+.*)?)*?(?=\n\S|\n*\Z)", re.M)
_FOOTNOTE_MARKER = re.compile(r"\[\^[^\]\n]+\]")


def read_markdown(path: Path, text: str, options: SplitOptions) -> Book:
    metadata, blocks = _readable(path, text)
    if options.mode is SplitMode.TOC:
        raise SourceError(path, "--split toc needs an EPUB's table of contents; try headings")
    if options.mode is SplitMode.PATTERN:
        assert options.pattern is not None
        return _book(
            path, metadata, chapters_of(split_at_pattern(blocks, options.pattern)), "pattern"
        )
    sections = split_at_headings(blocks)
    if sections is None:
        if options.mode is SplitMode.HEADINGS:
            raise SourceError(path, "has only one heading or none: nothing to split at")
        title = metadata.title or _single_heading(blocks) or path.stem
        body = [block for block in blocks if not (block.level and block.text == title)]
        return _book(path, metadata, chapters_of([Section(title, body)]), "whole")
    if metadata.title is None:
        metadata = replace(metadata, title=_single_heading(blocks, above=True))
    return _book(path, metadata, chapters_of(sections), "headings")


def read_markdown_chapter(path: Path, text: str) -> tuple[str | None, str, Metadata]:
    """A file holding one chapter: its title (its opening heading's, else its front matter's
    `title:`; None without either), its text with that heading left out (deeper headings stay,
    as paragraphs), and the book's fields its front matter gives."""
    metadata, blocks = _readable(path, text)
    book_fields = replace(metadata, title=None)  # a chapter file's `title:` is the chapter's
    if blocks and blocks[0].level:
        return blocks[0].text, Section(blocks[0].text, blocks[1:]).text(), book_fields
    return metadata.title, Section(None, blocks).text(), book_fields


def _readable(path: Path, text: str) -> tuple[Metadata, list[Block]]:
    """The front matter's fields, and the blocks a voice can read."""
    metadata, text = _front_matter(path, text)
    text = _FOOTNOTE_MARKER.sub("", _FOOTNOTE_DEFINITION.sub("", text))
    return metadata, _blocks(text)


def _book(path: Path, metadata: Metadata, chapters: list[Any], split: str) -> Book:
    if metadata.title is None:
        metadata = replace(metadata, title=path.stem)
    return Book(path, "markdown", split, metadata, tuple(chapters))


def _single_heading(blocks: list[Block], *, above: bool = False) -> str | None:
    """The text of the only `#` heading, the book's title (with `above`: only when the book
    splits below it)."""
    tops = [block for block in blocks if block.level == 1]
    if len(tops) != 1 or (above and not any(block.level > 1 for block in blocks)):
        return None
    return tops[0].text


def _blocks(text: str) -> list[Block]:
    """Headings and paragraphs (list items and quotes among them) in order; code and HTML
    blocks are not inline tokens, so they drop out, and tables are passed over (their cells
    make no sentences)."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    vocabulary = Vocabulary(text)
    blocks = []
    level = 0
    in_table = False
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            level = int(token.tag[1]) if token.type == "heading_open" else 0
        elif token.type in ("table_open", "table_close"):
            in_table = token.type == "table_open"
        elif token.type == "inline" and not in_table:
            words = join_lines(_inline_text(token.children or []).split("\n"), vocabulary)
            if words:
                blocks.append(Block(words, level))
    return blocks


def _inline_text(children: list[Any]) -> str:
    parts = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append("\n")
        elif child.type == "hardbreak":
            parts.append(" ")
    return "".join(parts)


def _front_matter(path: Path, text: str) -> tuple[Metadata, str]:
    """The YAML block at the very top (as Pandoc and static site generators write it), read
    for the book's fields; a block that is not valid YAML is left as text."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return Metadata(), text
    try:
        data = parse_yaml(match.group(1), path).data
    except ManifestError:
        return Metadata(), text

    def field(*names: str) -> str | None:
        for name in names:
            value = data.get(name)
            if isinstance(value, list):
                value = ", ".join(str(item) for item in value)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
        return None

    metadata = Metadata(
        title=field("title"),
        author=field("author", "authors", "creator"),
        language=field("language", "lang"),
        description=field("description", "abstract", "summary"),
        year=year_of(field("year", "date")),
        publisher=field("publisher"),
        series=field("series"),
        series_part=field("series_part", "series_index"),
        subtitle=field("subtitle"),
        isbn=field("isbn"),
    )
    return metadata, text[match.end() :]
