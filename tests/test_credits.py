"""ACX's opening and closing credits end to end: the example book rendered with `credits:`
through the CLI, its files, its .m4b's chapter marks and the text each credits job spoke (read
from the ledger), the credits going with the field, a preset's checks, and bad fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.examples import BOOK_DIR, example_book, invoke, render_offline
from songbatch.ledger import Ledger
from songbatch.manifest import Audiobook, credits_text, load_manifest
from songbatch.tagging import read_chapters
from songbatch.workspace import Workspace

TITLE = "The Lighthouse Keeper's Almanac"
AUTHOR = "A. N. Example"
NARRATOR = "The Offline Voice"
CHAPTERS = ["The Lamp", "The Storm", "The Letter"]


def outputs(workspace: Path) -> Path:
    return workspace / "outputs" / BOOK_DIR


def spoken(workspace: Path) -> list[list[str]]:
    """What each unit's jobs asked the engine to say, in order, from the ledger."""
    with Ledger.for_reading(Workspace(workspace).ledger_path) as ledger:
        [info] = ledger.manifests()
        units = []
        for unit in range(len(info.assembly.units)):
            keys = [job.key for job in ledger.unit_jobs(info.id, unit)]
            requests = ledger.job_requests(keys)
            units.append([requests[key].text for key in keys])
        return units


def squeeze(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("credits")
    render_offline(
        workspace, example_book(workspace, extra="\ncredits: {opening: true, closing: true}")
    )
    return workspace


def test_the_credits_are_the_first_and_last_files(book: Path) -> None:
    names = sorted(path.stem for path in outputs(book).glob("*.mp3"))
    assert names == [
        "00 - Opening Credits",
        *[f"{n:02d} - {title}" for n, title in enumerate(CHAPTERS, 1)],
        "04 - Closing Credits",
    ]


def test_the_m4b_marks_the_credits_first_and_last(book: Path) -> None:
    [m4b] = outputs(book).glob("*.m4b")
    titles = [title for title, _ in read_chapters(m4b)]
    assert titles == ["Opening Credits", *CHAPTERS, "Closing Credits"]


def test_the_credits_say_the_books_credits_and_not_their_title(book: Path) -> None:
    units = spoken(book)
    opening, closing = " ".join(units[0]), " ".join(units[-1])
    for credits in (opening, closing):
        assert TITLE in credits and AUTHOR in squeeze(credits) and NARRATOR in credits
        assert "credits" not in credits.lower()
    # The year, as the book has no publisher: said in words, as every chapter's numbers are.
    assert "Published in twenty twenty-four." in opening
    assert closing.startswith("The end.")
    # Chapters still have their titles spoken (speak_titles is on).
    assert [texts[0] for texts in units[1:-1]] == CHAPTERS


def test_the_credits_text_follows_the_books_tags() -> None:
    text = credits_text(
        "Why?", "Ann Author", subtitle="A Novel", narrator="Ned", publisher="Pub", year=2020
    )
    assert text.split("\n\n") == [
        "Why? A Novel.",
        "Written by Ann Author.",
        "Narrated by Ned.",
        "Published by Pub, 2020.",
    ]
    closing = credits_text("Why?", "Ann Author", publisher="Pub", closing=True)
    assert closing.split("\n\n") == ["The end.", "Why?", "Written by Ann Author."]


def test_a_given_text_is_spoken_as_written_and_credits_go_with_the_field(
    tmp_path: Path,
) -> None:
    words = "This is Maren's almanac, read for you by the offline voice."
    render_offline(tmp_path, example_book(tmp_path, extra=f'\ncredits: {{opening: "{words}"}}'))
    names = sorted(path.stem for path in outputs(tmp_path).glob("*.mp3"))
    assert names[0] == "00 - Opening Credits" and len(names) == 4
    assert squeeze(" ".join(spoken(tmp_path)[0])) == words

    render_offline(
        tmp_path, example_book(tmp_path, extra="\ncredits: {opening: true, closing: true}")
    )
    assert len(list(outputs(tmp_path).glob("*.mp3"))) == 5

    # Gone from the manifest: their files are removed and nothing is rendered again.
    result = render_offline(tmp_path, example_book(tmp_path))
    assert "rendered 0 job(s)" in result.output
    names = sorted(path.stem for path in outputs(tmp_path).glob("*.mp3"))
    assert names == [f"{n:02d} - {title}" for n, title in enumerate(CHAPTERS, 1)]
    [m4b] = outputs(tmp_path).glob("*.m4b")
    assert [title for title, _ in read_chapters(m4b)] == CHAPTERS


def test_acx_masters_and_passes_the_credits_like_any_chapter(tmp_path: Path) -> None:
    book = example_book(
        tmp_path, extra="\nmaster: acx\ncredits: {opening: true, closing: true}", formats="[mp3]"
    )
    result = render_offline(tmp_path, book)  # exit 0: every file passed the render's own ACX check
    assert "5 file(s) against acx" in result.output
    assert len(list(outputs(tmp_path).glob("*.mp3"))) == 5


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ("{opening: 3}", "credits.opening", "expected true"),
        ('{opening: ""}', "credits.opening", "must not be empty"),
        ('{closing: "   "}', "credits.closing", "must not be empty"),
        ('{closing: "* * *"}', "credits.closing", "nothing to speak"),
        ("{opening: true, colophon: true}", "credits.colophon", "unknown field 'colophon'"),
        ("{openin: true}", "credits.openin", "did you mean 'opening'?"),
        ("true", "credits", "{opening: true, closing: true}"),
        ("[opening]", "credits", "expected a mapping"),
    ],
)
def test_a_bad_credits_field_is_one_line_and_exit_2(
    tmp_path: Path, value: str, field: str, message: str
) -> None:
    result = render_offline(tmp_path, example_book(tmp_path, extra=f"\ncredits: {value}"), code=2)
    [line] = result.output.strip().splitlines()
    assert re.match(rf".*example-book\.yaml:14:\d+: {re.escape(field)}: ", line), line
    assert message in line
    assert not (tmp_path / ".songbatch").exists()


def test_a_chapter_named_like_the_credits_is_refused(tmp_path: Path) -> None:
    manifest = example_book(tmp_path, extra="\ncredits: {opening: true}")
    text = manifest.read_text("utf-8").replace(
        "  - title: The Storm\n", "  - title: The Storm\n    file: 00 - opening credits\n"
    )
    manifest.write_text(text, "utf-8")
    result = render_offline(tmp_path, manifest, code=2)
    [line] = result.output.strip().splitlines()
    assert "chapters[1].file" in line and "opening credits' file" in line
    assert not (tmp_path / ".songbatch").exists()


@pytest.mark.parametrize("value", ["{}", "{opening: false, closing: false}", "null"])
def test_credits_false_or_empty_add_nothing(tmp_path: Path, value: str) -> None:
    book = load_manifest(example_book(tmp_path, extra=f"\ncredits: {value}")).manifest
    assert isinstance(book, Audiobook)
    assert [chapter.title for chapter in book.chapters] == CHAPTERS


def test_a_chapters_bad_param_is_still_pointed_at_with_credits(tmp_path: Path) -> None:
    """The credits shift the chapters' places in the book, never where their errors point."""
    manifest = example_book(tmp_path, extra="\ncredits: {opening: true, closing: true}")
    text = manifest.read_text("utf-8").replace("exaggeration: 0.7", "exaggeration: 7")
    manifest.write_text(text, "utf-8")
    result = render_offline(tmp_path, manifest, code=2)
    [line] = result.output.strip().splitlines()
    assert "chapters[2].voice.params.exaggeration" in line, line


def test_preview_counts_the_chapters_written_not_the_credits(tmp_path: Path) -> None:
    """`--chapter 1` is the first chapter the person wrote, credits or not."""
    book = example_book(tmp_path, extra="\ncredits: {opening: true, closing: true}")
    args = ("preview", str(book), "--seconds", "2", "--workspace", str(tmp_path))
    result = invoke(*args, "--chapter", "1", "--profile", "offline")
    assert result.exit_code == 0, result.output
    [path] = (tmp_path / "previews").glob("*/*.flac")
    assert "The Lamp" in path.name
    beyond = invoke(*args, "--chapter", "4", "--profile", "offline")
    assert beyond.exit_code == 2 and "has 3 chapter(s)" in beyond.output
