"""Importing again into a manifest keeps what its person did to it: titles they changed,
per-chapter overrides, voices, fields and comments they added, chapters they removed, and
text files they edited. Only the chapters the manifest lacks are added (in the source's
order), and the text files songbatch wrote and nobody touched are refreshed."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.examples import invoke
from helpers.imports import imported

FIRST = """CHAPTER I.
The Start

The lamp was lit at dusk.

CHAPTER II.
The Middle

The keeper slept.

CHAPTER III.
The End

Morning came.
"""
# The source revised: a chapter added between the first two, the middle one rewritten.
SECOND = FIRST.replace(
    "CHAPTER II.\nThe Middle\n\nThe keeper slept.",
    "CHAPTER II.\nThe Interlude\n\nA ship passed.\n\nCHAPTER III.\nThe Middle\n\nThe keeper"
    " slept, and dreamed.",
).replace("CHAPTER III.\nThe End", "CHAPTER IV.\nThe End")

# What a person did to the imported manifest.
EDITS = [
    (
        "author: Unknown\n",
        "author: A. Writer\nnarrator: Jo  # me, reading\nvoice:\n  params:\n    rate: 150\n",
    ),
    (
        "    text_file: lamp/01-the-start.txt\n",
        "    text_file: lamp/01-the-start.txt\n    seed: 5\n    pauses:\n      paragraph: 1.5\n",
    ),
    ("  - title: The Middle\n", "  # the heart of it\n  - title: The Middle Part\n"),
    ("  - title: The End\n    text_file: lamp/03-the-end.txt\n", ""),
]


def edited(manifest: Path) -> str:
    text = manifest.read_text(encoding="utf-8")
    for old, new in EDITS:
        assert old in text, old
        text = text.replace(old, new)
    manifest.write_text(text, encoding="utf-8")
    return text


def test_a_reimport_keeps_every_edit_and_adds_only_the_new_chapter(tmp_path: Path) -> None:
    source, manifest = tmp_path / "lamp.txt", tmp_path / "lamp.yaml"
    source.write_text(FIRST, encoding="utf-8")
    imported(source, manifest)
    before = edited(manifest)
    start = tmp_path / "lamp" / "01-the-start.txt"
    start.write_text("The lamp was lit at dusk, as ever.\n", encoding="utf-8")
    source.write_text(SECOND, encoding="utf-8")

    result = invoke("import", str(source), "-o", str(manifest))
    assert result.exit_code == 0, result.output
    assert "lamp/01-the-start.txt: edited since the last import, kept as it is" in result.output
    after = manifest.read_text(encoding="utf-8")
    added = "  - title: The Interlude\n    text_file: lamp/02-the-interlude.txt\n"
    assert after == before.replace("  # the heart of it\n", added + "  # the heart of it\n")

    book = imported(source, manifest)  # and once more: nothing left to add
    assert manifest.read_text(encoding="utf-8") == after
    assert [(c.title, c.seed, c.pauses.paragraph) for c in book.chapters] == [
        ("The Start", 5, 1.5),
        ("The Interlude", 0, 0.9),
        ("The Middle Part", 0, 0.9),  # "The End", removed by its person, stays out
    ]
    assert (book.author, book.narrator, book.voice.params) == ("A. Writer", "Jo", {"rate": 150})
    assert [c.text for c in book.chapters] == [
        "The lamp was lit at dusk, as ever.\n",  # the person's edit
        "A ship passed.\n",
        "The keeper slept, and dreamed.\n",  # untouched since the import: refreshed
    ]


def test_the_dry_run_of_a_reimport_says_what_each_chapter_and_file_would_get(
    tmp_path: Path,
) -> None:
    source, manifest = tmp_path / "lamp.txt", tmp_path / "lamp.yaml"
    source.write_text(FIRST, encoding="utf-8")
    imported(source, manifest)
    before = edited(manifest)
    (tmp_path / "lamp" / "01-the-start.txt").write_text("Edited.\n", encoding="utf-8")
    source.write_text(SECOND, encoding="utf-8")

    result = invoke("import", str(source), "-o", str(manifest), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    rows = [(c["title"], c["status"], c["text"]) for c in json.loads(result.output)["chapters"]]
    assert rows == [
        ("The Start", "in the manifest", "edited, kept"),
        ("The Interlude", "new", "new"),
        ("The Middle", "in the manifest", "refreshed"),  # the source's title, as read
        ("The End", "removed from the manifest", None),
    ]
    assert manifest.read_text(encoding="utf-8") == before
    assert not (tmp_path / "lamp" / "02-the-interlude.txt").exists()


def test_a_file_songbatch_did_not_write_is_in_the_way(tmp_path: Path) -> None:
    source, manifest = tmp_path / "lamp.txt", tmp_path / "lamp.yaml"
    source.write_text(FIRST, encoding="utf-8")
    (tmp_path / "lamp").mkdir()
    theirs = tmp_path / "lamp" / "02-the-middle.txt"
    theirs.write_text("Someone else's notes.\n", encoding="utf-8")
    result = invoke("import", str(source), "-o", str(manifest))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"songbatch: error: {theirs}: is in the way (songbatch import did not write it): move"
        " it aside, or import with another -o"
    )
    assert sorted(p.name for p in (tmp_path / "lamp").iterdir()) == ["02-the-middle.txt"]
    assert not manifest.exists()


def test_a_manifest_that_does_not_load_is_not_imported_into(tmp_path: Path) -> None:
    source, manifest = tmp_path / "lamp.txt", tmp_path / "lamp.yaml"
    source.write_text(FIRST, encoding="utf-8")
    imported(source, manifest)
    broken = manifest.read_text(encoding="utf-8").replace("kind: audiobook", "kind: audiobok")
    manifest.write_text(broken, encoding="utf-8")
    source.write_text(SECOND, encoding="utf-8")
    result = invoke("import", str(source), "-o", str(manifest))
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"songbatch: error: {manifest}:4:7: kind: unknown kind 'audiobok'")
    assert line.endswith("(fix it to import again into it, or import with another -o)")
    assert manifest.read_text(encoding="utf-8") == broken
    assert not (tmp_path / "lamp" / "02-the-interlude.txt").exists()


def test_importing_another_books_file_into_a_manifest_says_so(tmp_path: Path) -> None:
    source, manifest = tmp_path / "lamp.txt", tmp_path / "lamp.yaml"
    source.write_text(FIRST, encoding="utf-8")
    imported(source, manifest)
    other = tmp_path / "lamp-revised.txt"
    other.write_text(SECOND, encoding="utf-8")
    result = invoke("import", str(other), "-o", str(manifest))
    assert result.exit_code == 0, result.output
    assert "lamp.yaml was imported from lamp.txt, not lamp-revised.txt" in result.output
