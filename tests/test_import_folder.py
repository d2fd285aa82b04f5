"""`songbatch import FOLDER`: a folder of chapter files (.txt, .md) as one book, a chapter per
file in natural order, titled by the file's opening heading or else its name, cleaned up as a
text or Markdown import is; files that are not chapters skipped and listed; bad folders one
line, exit 2, nothing written; and the book rendered into an m4b with those titles."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.examples import invoke, render_offline
from helpers.imports import imported
from songbatch.tagging import read_chapters

GUTENBERG_HEADER = (
    "The Project Gutenberg eBook of Tides\n\nTitle: Tides\nAuthor: Ann Tern\nLanguage: English\n\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK TIDES ***\n\n"
)
LICENCE = "\n\n*** END OF THE PROJECT GUTENBERG EBOOK TIDES ***\n\nSection 1. The licence...\n"

FILES = {
    # Sorted as text, "10-..." would come before "2.md": natural order puts it last.
    "10-a-caucus-race-and-a-long-tale.md": "The race had no start\nand no end.\n",
    "2.md": "---\nauthor: Ann Tern\n---\n# The Pool of Tears\n\nCurious-\ner and curious-\ner.\n",
    "1.txt": GUTENBERG_HEADER
    + "CHAPTER I. Down the Rabbit-Hole\n\nAlice was beginning to get\nvery tired of sit-\n"
    "ting by the rabbit-\nhole.\n\nSo she was considering.\n",
    "3.txt": "Chapter 3: The Queen's Croquet-Ground\n\nA large rose-tree\nstood near the gate.\n"
    + LICENCE,
}
TITLES = [
    "Down the Rabbit-Hole",
    "The Pool of Tears",
    "The Queen's Croquet-Ground",
    "A Caucus Race and a Long Tale",
]


def chapter_folder(root: Path, files: dict[str, str] = FILES) -> Path:
    folder = root / "tides"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_one_chapter_per_file_in_natural_order_titled_by_heading_or_name(tmp_path: Path) -> None:
    book = imported(chapter_folder(tmp_path), tmp_path / "out" / "tides.yaml")
    assert [chapter.title for chapter in book.chapters] == TITLES
    # The texts are numbered in reading order, whatever the source files' names were.
    assert [c.text_file for c in book.chapters] == [
        tmp_path / "out" / "tides" / name
        for name in (
            "01-down-the-rabbit-hole.txt",
            "02-the-pool-of-tears.txt",
            "03-the-queen-s-croquet-ground.txt",
            "04-a-caucus-race-and-a-long-tale.txt",
        )
    ]
    # The Gutenberg header and the front matter give the book's fields.
    assert (book.title, book.author) == ("Tides", "Ann Tern")


def test_each_file_is_cleaned_up_as_a_text_or_markdown_import(tmp_path: Path) -> None:
    book = imported(chapter_folder(tmp_path), tmp_path / "book.yaml")
    assert [chapter.text.strip().split("\n\n") for chapter in book.chapters] == [
        [
            "Alice was beginning to get very tired of sitting by the rabbit-hole.",
            "So she was considering.",
        ],
        ["Curiouser and curiouser."],  # the heading is the title, spoken from the manifest
        ["A large rose-tree stood near the gate."],  # no licence
        ["The race had no start and no end."],
    ]


def test_a_folder_without_book_fields_is_titled_by_its_name(tmp_path: Path) -> None:
    folder = tmp_path / "the_lantern-road"
    folder.mkdir()
    (folder / "01.txt").write_text("It was dark.\n", encoding="utf-8")
    (folder / "02.txt").write_text("It was light.\n", encoding="utf-8")
    book = imported(folder, tmp_path / "lantern.yaml")
    assert book.title == "The Lantern Road"
    assert [chapter.title for chapter in book.chapters] == ["Chapter 1", "Chapter 2"]


def test_files_that_are_not_chapters_are_skipped_and_listed(tmp_path: Path) -> None:
    folder = chapter_folder(tmp_path)
    (folder / "README.md").write_text("# How this folder was made\n\nBy hand.\n", encoding="utf-8")
    (folder / "LICENSE").write_text("Public domain.\n", encoding="utf-8")
    (folder / ".notes.txt").write_text("A hidden file.\n", encoding="utf-8")
    (folder / "5-blank.txt").write_text("\n \n", encoding="utf-8")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "drafts").mkdir()
    manifest = tmp_path / "book.yaml"

    result = invoke("import", str(folder), "-o", str(manifest), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [c["title"] for c in report["chapters"]] == TITLES
    assert report["skipped"] == [
        {"file": "5-blank.txt", "reason": "empty"},
        {"file": ".notes.txt", "reason": "hidden"},
        {"file": "cover.jpg", "reason": "not a text file (.jpg)"},
        {"file": "drafts", "reason": "a folder"},
        {"file": "LICENSE", "reason": "not a chapter (a licence)"},
        {"file": "README.md", "reason": "not a chapter (a read-me)"},
    ]
    assert report["split"] == "files" and not report["manifest_written"]

    table = invoke("import", str(folder), "-o", str(manifest), "--dry-run").output
    assert "folder, chapters from its files, one chapter each" in table
    assert "skipped README.md: not a chapter (a read-me)" in table
    assert "The Pool of Tears" in table and "dry run: nothing written" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tides"]


def test_importing_again_keeps_edits_and_adds_new_files(tmp_path: Path) -> None:
    folder = chapter_folder(tmp_path)
    manifest = tmp_path / "book.yaml"
    imported(folder, manifest)
    edited = tmp_path / "book" / "02-the-pool-of-tears.txt"
    edited.write_text("Curiouser, she said.\n", encoding="utf-8")
    manifest.write_text(
        manifest.read_text(encoding="utf-8").replace("The Pool of Tears", "Tears"),
        encoding="utf-8",
    )
    (folder / "11-who-stole-the-tarts.txt").write_text("Nobody knew.\n", encoding="utf-8")

    book = imported(folder, manifest)
    assert [chapter.title for chapter in book.chapters] == [
        "Down the Rabbit-Hole",
        "Tears",
        "The Queen's Croquet-Ground",
        "A Caucus Race and a Long Tale",
        "Who Stole the Tarts",
    ]
    assert edited.read_text(encoding="utf-8") == "Curiouser, she said.\n"


def nothing(folder: Path) -> Path:
    return folder


def only_a_cover(folder: Path) -> Path:
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def only_a_readme(folder: Path) -> Path:
    (folder / "README.md").write_text("# Notes\n\nHow this was made.\n", encoding="utf-8")
    return folder


def unreadable(folder: Path) -> Path:
    """A good chapter, then one that cannot be opened: a link to nothing (chmod 000 would not
    stop root)."""
    (folder / "1.txt").write_text("CHAPTER I.\n\nWords.\n", encoding="utf-8")
    link = folder / "2.txt"
    link.symlink_to(folder / "gone.txt")
    return link


def not_text(folder: Path) -> Path:
    (folder / "1.txt").write_text("CHAPTER I.\n\nWords.\n", encoding="utf-8")
    path = folder / "2.txt"
    path.write_bytes("A chapter in UTF-16 without its BOM.".encode("utf-16-le"))
    return path


BAD_FOLDERS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty-folder": (nothing, "is an empty folder"),
    "no-text-files": (only_a_cover, "has no .txt or .md files to read as chapters"),
    "only-a-readme": (
        only_a_readme,
        "has no chapter files to read (skipped: README.md (not a chapter (a read-me)))",
    ),
    "unreadable-file": (unreadable, "cannot be read: No such file or directory"),
    "not-text": (not_text, "contains NUL bytes: not a text file"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_a_bad_folder_is_one_line_naming_the_file_exit_2_nothing_written(
    case: str, tmp_path: Path
) -> None:
    make, message = BAD_FOLDERS[case]
    folder = tmp_path / "book"
    folder.mkdir()
    named = make(folder)
    before = sorted(tmp_path.rglob("*"))
    result = invoke("import", str(folder), "-o", str(tmp_path / "out.yaml"))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"songbatch: error: {named}: {message}")
    assert sorted(tmp_path.rglob("*")) == before


def test_split_options_apply_to_a_single_file(tmp_path: Path) -> None:
    result = invoke("import", str(chapter_folder(tmp_path)), "--split", "headings")
    assert result.exit_code == 2
    assert "is a folder: each file is one chapter; --split headings applies" in result.output


def test_the_imported_folder_renders_into_an_m4b_with_the_files_titles(tmp_path: Path) -> None:
    folder = chapter_folder(
        tmp_path,
        {"1.txt": "CHAPTER I. The Harbour\n\nGulls.\n", "2-a-light-on-the-water.md": "A lamp.\n"},
    )
    manifest = tmp_path / "harbour.yaml"
    imported(folder, manifest)
    manifest.write_text(manifest.read_text(encoding="utf-8") + "formats: [m4b]\n", encoding="utf-8")
    render_offline(tmp_path / "ws", manifest)
    [m4b] = (tmp_path / "ws" / "outputs" / "tides").glob("*.m4b")
    assert [title for title, _ in read_chapters(m4b)] == ["The Harbour", "A Light on the Water"]


def test_the_default_manifest_is_named_apart_from_the_folder(tmp_path: Path) -> None:
    """The chapter texts go in the folder named as the manifest: never the folder imported."""
    chapter_folder(tmp_path)
    cwd = Path.cwd()
    for where, source in ((tmp_path, "tides"), (tmp_path / "tides", ".")):
        os.chdir(where)
        try:
            result = invoke("import", source, "--dry-run", "--json")
        finally:
            os.chdir(cwd)
        assert result.exit_code == 0, result.output
        assert Path(json.loads(result.output)["manifest"]).name == "tides-audiobook.yaml"


def test_a_manifest_whose_texts_would_go_in_the_folder_imported_is_refused(
    tmp_path: Path,
) -> None:
    folder = chapter_folder(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = invoke("import", str(folder), "-o", str(tmp_path / "tides.yaml"))
    assert result.exit_code == 2
    assert result.output.strip().endswith("the folder being imported; choose another -o")
    assert sorted(tmp_path.rglob("*")) == before
