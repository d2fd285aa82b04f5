"""`songbatch import` of Markdown: chapters at the top heading level that gives more than one,
the metadata from a YAML front matter block, and only what a voice can read (no code, images,
HTML, footnotes or link targets)."""

from __future__ import annotations

from pathlib import Path

from helpers.imports import imported

BOOK = """---
title: The Tide Tables
author: [Ann Tern, Bo Gull]
language: en-GB
date: 2022-06-01
publisher: Shore Books
---

# The Tide Tables

A few words before the first chapter.

## Low Water

The tide went out[^1] and the *boats* lay on the [mud](https://example.com/mud).
Gulls walked where
the water had been.

![a drawing of the harbour](harbour.png)

```
tide = moon()  # never read aloud
```

<div class="aside">An HTML block.</div>

### Later that day

- The nets were mended.
- The lamps were trimmed.

> “Wait for the flood,” said the harbour master.

## High Water

The sea came back, as it al-
ways does.

[^1]: It goes out twice a day,
    as everyone here knows.
"""


def test_chapters_at_the_level_below_a_single_book_title(tmp_path: Path) -> None:
    source = tmp_path / "tides.md"
    source.write_text(BOOK, encoding="utf-8")
    book = imported(source, tmp_path / "tides.yaml")
    assert [chapter.title for chapter in book.chapters] == ["Low Water", "High Water"]
    assert book.chapters[0].text.strip().split("\n\n") == [
        "The tide went out and the boats lay on the mud. Gulls walked where the water had been.",
        "Later that day",  # a deeper heading stays in its chapter's text
        "The nets were mended.",
        "The lamps were trimmed.",
        "“Wait for the flood,” said the harbour master.",
    ]
    assert book.chapters[1].text.strip() == "The sea came back, as it always does."


def test_front_matter_gives_the_books_fields(tmp_path: Path) -> None:
    source = tmp_path / "tides.md"
    source.write_text(BOOK, encoding="utf-8")
    book = imported(source, tmp_path / "tides.yaml")
    assert (book.title, book.author, book.language, book.year, book.publishing.publisher) == (
        "The Tide Tables",
        "Ann Tern, Bo Gull",
        "en-GB",
        2022,
        "Shore Books",
    )


def test_without_front_matter_the_single_top_heading_is_the_title(tmp_path: Path) -> None:
    source = tmp_path / "notes.md"
    source.write_text(
        "# Harbour Notes\n\n## One\n\nFirst.\n\n## Two\n\nSecond.\n", encoding="utf-8"
    )
    book = imported(source, tmp_path / "notes.yaml")
    assert book.title == "Harbour Notes"
    assert [(c.title, c.text.strip()) for c in book.chapters] == [
        ("One", "First."),
        ("Two", "Second."),
    ]


def test_top_level_chapters_and_setext_headings(tmp_path: Path) -> None:
    source = tmp_path / "book.md"
    source.write_text(
        "Dawn\n====\n\nLight.\n\nDusk\n====\n\nDark.\n\n## Night\n\nStars.\n", encoding="utf-8"
    )
    book = imported(source, tmp_path / "book.yaml")
    assert [c.title for c in book.chapters] == ["Dawn", "Dusk"]
    assert book.chapters[1].text.strip() == "Dark.\n\nNight\n\nStars."


def test_include_matter_reads_what_comes_before_the_first_chapter(tmp_path: Path) -> None:
    source = tmp_path / "tides.md"
    source.write_text(BOOK, encoding="utf-8")
    book = imported(source, tmp_path / "tides.yaml", "--include-matter")
    assert [c.title for c in book.chapters] == ["The Tide Tables", "Low Water", "High Water"]
    assert book.chapters[0].text.strip() == "A few words before the first chapter."
