"""A source `songbatch import` cannot use is one line naming the file and exit 2, and nothing is
written: no manifest, no chapter folder, not a half of either. Each case is a real file of
that kind (an EPUB built with ebooklib, then damaged or locked as such files are)."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.epubs import add_entry, epub3, rewrite
from helpers.examples import invoke

ENCRYPTED_CONTENT = b"""<?xml version="1.0"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
            xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
  <enc:EncryptedData>
    <enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
    <enc:CipherData><enc:CipherReference URI="EPUB/the-harbour-at-dusk.xhtml"/></enc:CipherData>
  </enc:EncryptedData>
</encryption>
"""
OBFUSCATED_FONT = ENCRYPTED_CONTENT.replace(
    b"http://www.w3.org/2001/04/xmlenc#aes128-cbc", b"http://www.idpf.org/2008/embedding"
).replace(b"EPUB/the-harbour-at-dusk.xhtml", b"EPUB/fonts/serif.otf")


def written(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return make


def zip_not_epub(folder: Path) -> Path:
    path = folder / "book.epub"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("holiday/photo.txt", "a zip file of something else")
    return path


def missing_document(folder: Path) -> Path:
    return rewrite(epub3(folder / "book.epub"), "EPUB/a-light-on-the-water.xhtml", None)


def spine_names_nothing(folder: Path) -> Path:
    return rewrite(
        epub3(folder / "book.epub"),
        "EPUB/content.opf",
        lambda opf: opf.replace(b"</spine>", b'<itemref idref="chapter-9"/></spine>'),
    )


def encrypted_content(folder: Path) -> Path:
    return add_entry(epub3(folder / "book.epub"), "META-INF/encryption.xml", ENCRYPTED_CONTENT)


def adobe_rights(folder: Path) -> Path:
    epub = add_entry(epub3(folder / "book.epub"), "META-INF/rights.xml", b"<rights/>")
    return add_entry(epub, "META-INF/encryption.xml", ENCRYPTED_CONTENT)


def missing(folder: Path) -> Path:
    return folder / "no-such-book.epub"


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "not-a-zip": (
        written("book.epub", b"This is a letter, not a book."),
        "is not an EPUB (not a zip file)",
    ),
    "zip-not-epub": (zip_not_epub, "is a zip file but not an EPUB (no META-INF/container.xml)"),
    "missing-spine-document": (
        missing_document,
        "is a damaged EPUB: EPUB/a-light-on-the-water.xhtml is listed in its package but not in"
        " the file",
    ),
    "spine-names-nothing": (
        spine_names_nothing,
        "is a damaged EPUB: its spine names 'chapter-9', which its manifest lacks",
    ),
    "drm-encrypted-content": (
        encrypted_content,
        "is DRM-protected: META-INF/encryption.xml says its content is encrypted"
        " (EPUB/the-harbour-at-dusk.xhtml)",
    ),
    "drm-adobe-rights": (adobe_rights, "is DRM-protected (Adobe ADEPT, META-INF/rights.xml)"),
    "empty-epub": (written("book.epub", b""), "is empty"),
    "empty-text": (written("book.txt", b"\n  \n"), "is empty"),
    "nothing-to-say": (
        written("book.md", b"# \\* \\* \\*\n\n---\n\n```\ncode only\n```\n"),
        "has no text to read",
    ),
    "unknown-extension": (written("book.pdf", b"%PDF-1.7\n"), "unknown kind of book (.pdf)"),
    "missing": (missing, "not found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_source_is_one_line_exit_2_and_nothing_is_written(case: str, tmp_path: Path) -> None:
    make, message = CASES[case]
    source = make(tmp_path)
    before = sorted(tmp_path.iterdir())
    result = invoke("import", str(source), "-o", str(tmp_path / "book.yaml"))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"songbatch: error: {source}: {message}")
    assert sorted(tmp_path.iterdir()) == before  # no manifest, no book/ folder


def test_drm_says_what_to_do(tmp_path: Path) -> None:
    result = invoke("import", str(encrypted_content(tmp_path)), "-o", str(tmp_path / "b.yaml"))
    assert re.search(r"cannot read its text; import a DRM-free copy$", result.output.strip())


def test_font_obfuscation_is_not_drm(tmp_path: Path) -> None:
    source = add_entry(epub3(tmp_path / "book.epub"), "META-INF/encryption.xml", OBFUSCATED_FONT)
    result = invoke("import", str(source), "-o", str(tmp_path / "book.yaml"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "book" / "01-the-harbour-at-dusk.txt").is_file()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--split", "pattern"], "--split pattern needs --pattern REGEX"),
        (["--pattern", "(unclosed"], "--pattern '(unclosed': not a regular expression"),
        (["--split", "toc", "--pattern", "x"], "--pattern goes with --split pattern"),
        (["--split", "toc"], "--split toc needs an EPUB's table of contents"),
        (["--split", "sideways"], "Invalid value for '--split'"),
    ],
)
def test_bad_options_are_one_line_exit_2(options: list[str], message: str, tmp_path: Path) -> None:
    source = tmp_path / "book.txt"
    source.write_text("CHAPTER I.\n\nWords.\n\nCHAPTER II.\n\nMore words.\n", encoding="utf-8")
    result = invoke("import", str(source), "-o", str(tmp_path / "book.yaml"), *options)
    assert result.exit_code == 2
    assert message in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.txt"]


def test_a_manifest_name_must_end_in_yaml(tmp_path: Path) -> None:
    source = tmp_path / "book.txt"
    source.write_text("Words.\n", encoding="utf-8")
    result = invoke("import", str(source), "-o", str(tmp_path / "book.txt.out"))
    assert result.exit_code == 2
    assert result.output.strip().endswith("a manifest's name ends in .yaml (-o book.yaml)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.txt"]
