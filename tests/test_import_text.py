"""`songbatch import` of plain text: chapters at their heading lines, Project Gutenberg's
header, licence and contents left out, and the clean-up a voice needs (hard wraps joined,
line-break hyphens mended, paragraphs kept, quotes as typed). Alice is read from
../shared/corpus, never copied here."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from helpers.examples import REPO, invoke
from helpers.imports import imported
from songbatch.importing.cleanup import (
    Vocabulary,
    chapter_text,
    join_lines,
    without_underscore_emphasis,
)

# ../shared/corpus beside the checkout; SONGBATCH_CORPUS names it for a checkout elsewhere
# (a git worktree).
CORPUS = Path(os.environ.get("SONGBATCH_CORPUS", REPO.parent / "shared" / "corpus"))
ALICE = CORPUS / "alice.txt"
ALICE_CHAPTERS = [
    "Down the Rabbit-Hole",
    "The Pool of Tears",
    "A Caucus-Race and a Long Tale",
    "The Rabbit Sends in a Little Bill",
    "Advice from a Caterpillar",
    "Pig and Pepper",
    "A Mad Tea-Party",
    "The Queen's Croquet-Ground",
    "The Mock Turtle's Story",
    "The Lobster Quadrille",
    "Who Stole the Tarts?",
    "Alice's Evidence",
]
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]
HEADER = """\ufeffThe Project Gutenberg eBook of Alice's Adventures in Wonderland

This ebook is for the use of anyone anywhere in the United States and
most other parts of the world at no cost and with almost no restrictions
whatsoever.

Title: Alice's Adventures in Wonderland

Author: Lewis Carroll

Release date: June 27, 2008 [eBook #11]

Language: English

*** START OF THE PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***

[Illustration]

Alice's Adventures in Wonderland

by Lewis Carroll

THE MILLENNIUM FULCRUM EDITION 3.0

Contents

"""
FOOTER = """

*** END OF THE PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***

Updated editions will replace the previous one--the old editions will
be renamed.

START: FULL LICENSE

THE FULL PROJECT GUTENBERG LICENSE
PLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK
"""


def paragraphs(text: str) -> list[str]:
    return text.strip("\n").split("\n\n")


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", text)


@pytest.fixture
def alice() -> str:
    if not ALICE.is_file():
        pytest.skip(f"{ALICE} is not here (the shared corpus)")
    return ALICE.read_text(encoding="utf-8")


def test_alice_is_twelve_chapters_with_their_titles_and_every_paragraph(
    alice: str, tmp_path: Path
) -> None:
    book = imported(ALICE, tmp_path / "alice.yaml")
    assert [chapter.title for chapter in book.chapters] == ALICE_CHAPTERS
    source_chapters = re.split(r"(?m)^CHAPTER [IVX]+\. .*$", alice.replace("\r\n", "\n"))[1:]
    assert len(source_chapters) == 12
    for chapter, source in zip(book.chapters, source_chapters, strict=True):
        # Every paragraph kept (the "*  *  *" scene breaks are pauses, not words), each on one
        # line: its hard wraps joined.
        blocks = [block for block in re.split(r"\n\s*\n", source) if words(block)]
        assert len(paragraphs(chapter.text)) == len(blocks)
        assert all(paragraph and "\n" not in paragraph for paragraph in paragraphs(chapter.text))
        assert words(chapter.text) == words(source)


def test_gutenbergs_header_contents_and_licence_are_left_out(alice: str, tmp_path: Path) -> None:
    contents = "".join(
        f" CHAPTER {n}.     {t}\n" for n, t in zip(ROMAN, ALICE_CHAPTERS, strict=True)
    )
    source = tmp_path / "pg11.txt"
    source.write_text(HEADER + contents + "\n\n" + alice + FOOTER, encoding="utf-8")
    book = imported(source, tmp_path / "alice.yaml")
    assert [chapter.title for chapter in book.chapters] == ALICE_CHAPTERS
    assert (book.title, book.author, book.language) == (
        "Alice's Adventures in Wonderland",
        "Lewis Carroll",
        "en",
    )
    for chapter in book.chapters:
        for boilerplate in ("Gutenberg", "GUTENBERG", "LICENSE", "Illustration", "FULCRUM"):
            assert boilerplate not in chapter.text
    assert words(book.chapters[-1].text) == words(re.split(r"(?m)^CHAPTER XII\. .*$", alice)[1])


GUTENBERG_OLD_STYLE = """The Project Gutenberg EBook of The Lamp, by A. Writer

*** START OF THIS PROJECT GUTENBERG EBOOK THE LAMP ***

Produced by a volunteer.

CONTENTS

CHAPTER I.

CHAPTER II.

CHAPTER I.
THE FIRST NIGHT

The keeper climbed the stairs. He count-
ed them, as his mother had, and his
grandmother before her.

“It is late,” he said.

CHAPTER II.

The Second Night

The sea was calm.

End of the Project Gutenberg EBook of The Lamp, by A. Writer

*** END OF THIS PROJECT GUTENBERG EBOOK THE LAMP ***

This file should be named lamp.txt.
"""


def test_an_older_gutenberg_text_with_titles_under_its_headings(tmp_path: Path) -> None:
    source = tmp_path / "lamp.txt"
    source.write_text(GUTENBERG_OLD_STYLE, encoding="utf-8")
    book = imported(source, tmp_path / "lamp.yaml")
    assert [chapter.title for chapter in book.chapters] == ["The First Night", "The Second Night"]
    assert paragraphs(book.chapters[0].text) == [
        "The keeper climbed the stairs. He counted them, as his mother had, and his"
        " grandmother before her.",
        "“It is late,” he said.",
    ]
    assert book.chapters[1].text.strip() == "The sea was calm."
    assert book.title == "Lamp"  # an old header has no "Title:" line: the file's name


@pytest.mark.parametrize(
    ("text", "titles"),
    [
        (
            "Chapter 1: The Storm\n\nRain.\n\nChapter 2 - The Calm\n\nSun.\n\nChapter 3\n\nFog.\n",
            ["The Storm", "The Calm", "Chapter 3"],
        ),
        (
            "PROLOGUE\n\nBefore.\n\nCHAPTER ONE\n\nOne.\n\nCHAPTER TWENTY-TWO\n\nTwo.\n",
            ["Prologue", "Chapter One", "Chapter Twenty-Two"],
        ),
        ("1.\n\nThe Beginning\n\nOne.\n\n2.\n\nThe End\n\nTwo.\n", ["The Beginning", "The End"]),
        ("I\n\nOne.\n\nII\n\nTwo.\n", ["I", "II"]),
    ],
    ids=["chapter-with-titles", "words-and-prologue", "numbers", "roman"],
)
def test_chapter_headings(text: str, titles: list[str], tmp_path: Path) -> None:
    source = tmp_path / "book.txt"
    source.write_text(text, encoding="utf-8")
    book = imported(source, tmp_path / "book.yaml")
    assert [chapter.title for chapter in book.chapters] == titles


def test_prose_that_starts_like_a_heading_and_a_numbered_list_are_not_chapters(
    tmp_path: Path,
) -> None:
    source = tmp_path / "book.txt"
    source.write_text(
        "Chapter five was the best part\nof the book, said Jo.\n\n"
        "Chapter six was the worst part\nof it, said Ann.\n\n"
        "Things to pack:\n\n"
        "1. A lamp for the long evenings and a spare wick\nin case.\n\n"
        "2. A coat.\nAnd boots.\n",
        encoding="utf-8",
    )
    book = imported(source, tmp_path / "book.yaml")
    assert [chapter.title for chapter in book.chapters] == ["Book"]
    assert len(paragraphs(book.chapters[0].text)) == 5


def test_a_given_pattern_splits_and_names_chapters(tmp_path: Path) -> None:
    source = tmp_path / "log.txt"
    source.write_text(
        "Preface words.\n\n§ Day one at sea\n\nCalm.\n\n§ Day two at sea\n\nA storm.\n",
        encoding="utf-8",
    )
    book = imported(source, tmp_path / "log.yaml", "--pattern", r"§ (?P<title>.+)")
    assert [(c.title, c.text.strip()) for c in book.chapters] == [
        ("Day one at sea", "Calm."),
        ("Day two at sea", "A storm."),
    ]


def test_a_text_without_headings_is_one_chapter(tmp_path: Path) -> None:
    source = tmp_path / "letter.txt"
    source.write_text("Dear Ann,\n\nThe lamp is lit.\nAll is well.\n", encoding="utf-8")
    book = imported(source, tmp_path / "letter.yaml")
    assert [(c.title, paragraphs(c.text)) for c in book.chapters] == [
        ("Letter", ["Dear Ann,", "The lamp is lit. All is well."])
    ]


def test_windows_1252_text_is_read_and_written_as_utf8(tmp_path: Path) -> None:
    source = tmp_path / "old.txt"
    source.write_bytes(
        "CHAPTER I.\n\nCaf\xe9 \x93noir\x94.\n\nCHAPTER II.\n\nFin.\n".encode("latin-1")
    )
    result = invoke("import", str(source), "-o", str(tmp_path / "old.yaml"))
    assert result.exit_code == 0, result.output
    assert "old.txt is not UTF-8: read as Windows-1252" in result.output
    text = (tmp_path / "old" / "01-chapter-i.txt").read_text(encoding="utf-8")
    assert text == "Café “noir”.\n"


# --- the clean-up rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "evidence", "joined"),
    [
        (["some-", "thing else"], "", "something else"),  # a break inside a word
        (["a rabbit-", "hole"], "down the rabbit-hole", "a rabbit-hole"),  # a compound, seen
        (["to-", "day"], "today it rained", "today"),  # the whole word, seen
        (["Anglo-", "Saxon"], "", "Anglo-Saxon"),  # a capital: a compound's part
        (["I think--", "and then"], "", "I think--and then"),  # a dash, not a hyphen
        (["the sea —", "calm"], "", "the sea — calm"),  # a spaced dash keeps its spaces
        (["  wrapped  line  ", "", "   goes on "], "", "wrapped line goes on"),
        (["number 5-", "6"], "", "number 5- 6"),  # not a word: left alone
    ],
)
def test_hard_wraps_and_line_break_hyphens(lines: list[str], evidence: str, joined: str) -> None:
    assert join_lines(lines, Vocabulary(evidence + "\n" + "\n".join(lines))) == joined


def test_paragraphs_are_one_line_each_with_quotes_kept_and_scene_breaks_dropped() -> None:
    text = chapter_text(["“Hello,”  she said —\u00a0‘quietly’.", "* * *", "It’s late…"])
    assert text == "“Hello,” she said — ‘quietly’.\n\nIt’s late…"


def test_underscore_italics_lose_their_underscores_only() -> None:
    assert without_underscore_emphasis("a _very_ odd snake_case name") == (
        "a very odd snake_case name"
    )


def test_split_pattern_takes_its_regex_as_the_usage_line_writes_it(tmp_path: Path) -> None:
    """`--split pattern REGEX`, as the issue's usage line has it, is `--pattern REGEX`."""
    source = tmp_path / "log.txt"
    source.write_text("§ Day one\n\nCalm.\n\n§ Day two\n\nA storm.\n", encoding="utf-8")
    book = imported(source, tmp_path / "log.yaml", "--split", "pattern", r"§ (?P<title>.+)")
    assert [c.title for c in book.chapters] == ["Day one", "Day two"]
    both = invoke("import", str(source), str(source), "--dry-run")
    assert both.exit_code == 2 and "one SOURCE" in both.output
