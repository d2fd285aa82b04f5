"""`songbatch import` of EPUBs built here with ebooklib: an EPUB 3 read through its navigation
document and epub:type semantics, an EPUB 2 through its NCX and guide. Chapters, their real
titles, what is left out (front and back matter, footnotes, page numbers), the package's
metadata and cover; and the manifest rendered with the offline profile into an m4b whose
chapter marks are the book's titles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.epubs import AUTHOR, CHAPTERS, ISBN, MATTER_WORDS, NOTE, TITLE, cover_png, epub2, epub3
from helpers.examples import invoke, render_offline
from helpers.imports import imported
from songbatch.tagging import read_chapters


@pytest.fixture(params=[epub3, epub2], ids=["epub3-nav", "epub2-ncx"])
def made(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    build = request.param
    return build.__name__, build(tmp_path / f"{build.__name__}.epub")


def test_chapters_are_the_books_with_their_real_titles(
    made: tuple[str, Path], tmp_path: Path
) -> None:
    _, source = made
    book = imported(source, tmp_path / "out" / "lantern.yaml")
    assert [chapter.title for chapter in book.chapters] == CHAPTERS
    files = [chapter.text_file for chapter in book.chapters]
    assert [f.name for f in files if f] == [
        "01-the-harbour-at-dusk.txt",
        "02-a-light-on-the-water.txt",
        "03-home-before-morning.txt",
    ]
    assert all(f is not None and f.parent == tmp_path / "out" / "lantern" for f in files)


def test_matter_notes_and_page_numbers_are_not_read(made: tuple[str, Path], tmp_path: Path) -> None:
    _, source = made
    book = imported(source, tmp_path / "lantern.yaml")
    words = "\n".join(chapter.text for chapter in book.chapters)
    for matter in MATTER_WORDS.values():
        assert matter not in words
    assert NOTE not in words
    assert book.chapters[0].text.strip() == (
        "“Stay close,” said Ada, and the tide turned below the wall. The gulls went quiet."
    )
    assert book.chapters[1].text.strip() == (
        "Far out, a single lamp burned on the black water — steady, patient, unafraid."
    )
    assert not any(ch.isdigit() for ch in words)  # no marker, no page number, no "Chapter 1"


def test_the_package_metadata_and_cover_fill_the_manifest(
    made: tuple[str, Path], tmp_path: Path
) -> None:
    kind, source = made
    manifest = tmp_path / "lantern.yaml"
    book = imported(source, manifest)
    assert (book.title, book.author, book.publishing.publisher, book.publishing.isbn) == (
        TITLE,
        AUTHOR,
        "Harbour Press",
        ISBN,
    )
    assert book.publishing.series == "Lights of the Coast"
    if kind == "epub3":  # belongs-to-collection; dc:date 2021-05-01; HTML in the description
        assert (book.language, book.year, book.publishing.series_part) == ("en-GB", 2021, "2")
        assert book.description == "A short test novel of the sea."
    else:  # calibre:series_index "3.0"; an illustrator is not an author
        assert (book.language, book.year, book.publishing.series_part) == ("en", 1998, "3")
        assert book.description is None
    assert book.cover == tmp_path / "lantern" / "cover.png"
    assert book.cover.read_bytes() == cover_png()


def test_include_matter_reads_front_and_back_matter_too(tmp_path: Path) -> None:
    book = imported(epub3(tmp_path / "b.epub"), tmp_path / "b.yaml", "--include-matter")
    assert [chapter.title for chapter in book.chapters] == [
        TITLE,  # the title page, before the table of contents' first entry
        "Copyright",
        "Dedication",
        *CHAPTERS,
        "Acknowledgements",
        "About the Author",
    ]
    assert MATTER_WORDS["copyright"] in book.chapters[1].text


def test_the_dry_run_lists_every_section_and_writes_nothing(tmp_path: Path) -> None:
    source = epub3(tmp_path / "b.epub")
    result = invoke("import", str(source), "-o", str(tmp_path / "b.yaml"), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = [(c["title"], c["status"], c["matter"]) for c in report["chapters"]]
    assert rows == [
        (TITLE, "left out", "title page"),
        ("Copyright", "left out", "copyright"),
        ("Dedication", "left out", "dedication"),
        *[(title, "new", None) for title in CHAPTERS],
        ("Acknowledgements", "left out", "acknowledgements"),
        ("About the Author", "left out", "about the author"),
    ]
    assert report["split"] == "toc" and not report["manifest_written"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.epub"]

    table = invoke("import", str(source), "-o", str(tmp_path / "b.yaml"), "--dry-run").output
    assert "The Harbour at Dusk" in table and "left out (copyright)" in table
    assert "dry run: nothing written" in table


def test_splitting_at_headings_finds_the_same_chapters_as_the_toc(tmp_path: Path) -> None:
    source = epub3(tmp_path / "b.epub")
    for split in ("headings", "toc"):
        book = imported(source, tmp_path / f"{split}.yaml", "--split", split)
        assert [chapter.title for chapter in book.chapters] == CHAPTERS


def test_the_imported_book_renders_into_an_m4b_with_its_chapter_titles(tmp_path: Path) -> None:
    manifest = tmp_path / "lantern.yaml"
    imported(epub3(tmp_path / "b.epub"), manifest)
    # As a person would before a first listen: one file, the whole book.
    manifest.write_text(manifest.read_text(encoding="utf-8") + "formats: [m4b]\n", encoding="utf-8")
    render_offline(tmp_path / "ws", manifest)
    [m4b] = (tmp_path / "ws" / "outputs" / "the-lantern-road").glob("*.m4b")
    assert [title for title, _ in read_chapters(m4b)] == CHAPTERS


def test_a_toc_into_one_documents_fragments_with_parts_and_subsections(tmp_path: Path) -> None:
    """A converter's layout: the whole text in one document, the toc pointing into it, nested
    part > chapter > subsection. Chapters are the entries that start their own stretch of text;
    subsections (entries into their chapter's own document) stay in it."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("one-file")
    book.set_title("One File")
    book.add_author(AUTHOR)
    sections = "".join(
        f'<h2 id="c{i}">Chapter {i}</h2><p>Text {i}.</p>'
        f'<h3 id="s{i}">Aside {i}</h3><p>More {i}.</p>'
        for i in (1, 2)
    )
    text = epub.EpubHtml(file_name="text.xhtml", content=f"<html><body>{sections}</body></html>")
    part = epub.EpubHtml(
        file_name="part.xhtml", content="<html><body><h1>Part One</h1></body></html>"
    )
    for item in (part, text):
        book.add_item(item)
    chapters = [
        (
            epub.Section(f"Chapter {i}", f"text.xhtml#c{i}"),
            [epub.Link(f"text.xhtml#s{i}", f"Aside {i}", f"s{i}")],
        )
        for i in (1, 2)
    ]
    book.toc = [(epub.Section("Part One", "part.xhtml"), chapters)]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", part, text]
    epub.write_epub(str(tmp_path / "one.epub"), book)

    imported_book = imported(tmp_path / "one.epub", tmp_path / "one.yaml")
    assert [(c.title, c.text.split("\n\n")) for c in imported_book.chapters] == [
        ("Chapter 1", ["Text 1.", "Aside 1", "More 1.\n"]),
        ("Chapter 2", ["Text 2.", "Aside 2", "More 2.\n"]),
    ]  # "Part One" has no words of its own: no chapter


def test_a_page_keeps_exponents_and_ordinals_and_loses_markers_and_page_numbers() -> None:
    from songbatch.importing import xhtml

    page = (
        b'<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"'
        b' xmlns:epub="http://www.idpf.org/2007/ops"><head><title>T</title></head><body>'
        b"<p>An area of 10 m<sup>2</sup> in the 19<sup>th</sup> century,<sup>3</sup> and"
        b'<span epub:type="pagebreak" id="p9" title="9"/> the rest&nbsp;&mdash; kept.</p>'
        b'<p>Then<span class="pagenum">[Pg 10]</span> more'
        b'<a href="#n4" id="r4"><sup>[4]</sup></a>.</p>'
        b'<div><p><a id="n4" href="#r4">4.</a> The note itself.</p></div></body></html>'
    )
    root = xhtml.parse(page)
    targets = xhtml.NoteTargets()
    xhtml.note_references(root, "page.xhtml", targets)
    document = xhtml.extract(root, "page.xhtml", targets.of("page.xhtml"))
    assert [block.text for block in document.blocks] == [
        "An area of 10 m2 in the 19th century, and the rest — kept.",
        "Then more.",
    ]
