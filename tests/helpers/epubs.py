"""EPUBs built in the test with ebooklib, as publishers' tools lay them out: an EPUB 3 with a
navigation document, epub:type semantics and a cover image; an EPUB 2 with only an NCX, a
<guide>, an opf:role'd creator and calibre's series metadata. Both carry front and back matter,
footnotes and page-number markers around three short chapters."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from ebooklib import epub
from PIL import Image

TITLE = "The Lantern Road"
AUTHOR = "Mira Okafor"
CHAPTERS = ["The Harbour at Dusk", "A Light on the Water", "Home Before Morning"]
# Each chapter's words, with a footnote marker (n) and a page number (p) where they go.
WORDS = [
    "“Stay close,” said Ada, and the tide turned below the wall.{n} The gulls went quiet.{p}",
    "Far out, a single lamp burned{n} on the black water — steady, patient, unafraid.{p}",
    "They rowed home before morning.{p} Nobody spoke of the lamp again.{n}",
]
NOTE = "A footnote the narrator must not read inline."
MATTER_WORDS = {
    "copyright": "Copyright 2021 Mira Okafor. All rights reserved.",
    "dedication": "For my sister, who kept the light.",
    "acknowledgements": "Thanks to the harbour master for the charts.",
    "about": "Mira Okafor lives by the sea and writes about lighthouses.",
}
ISBN = "9780306406157"
OPF = "http://www.idpf.org/2007/opf"


def cover_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


def _page(title: str, body: str, lang: str = "en") -> epub.EpubHtml:
    name = re.sub(r"\W+", "-", title.lower()).strip("-") + ".xhtml"
    return epub.EpubHtml(
        title=title, file_name=name, lang=lang, content=f"<html><body>{body}</body></html>"
    )


def _chapter3(number: int, title: str, words: str) -> epub.EpubHtml:
    page = number * 7
    text = words.format(
        n=f'<a epub:type="noteref" href="#fn{number}"><sup>{number}</sup></a>',
        p=f'<span epub:type="pagebreak" id="p{page}" title="{page}">{page}</span>',
    )
    return _page(
        title,
        f'<section epub:type="chapter"><h1>{title}</h1><p>{text}</p>'
        f'<aside epub:type="footnote" id="fn{number}"><p>{NOTE}</p></aside></section>',
    )


def epub3(path: Path) -> Path:
    book = epub.EpubBook()
    book.set_identifier(f"urn:isbn:{ISBN}")
    book.set_title(TITLE)
    book.set_language("en-GB")
    book.add_author(AUTHOR)
    book.add_metadata("DC", "publisher", "Harbour Press")
    book.add_metadata("DC", "date", "2021-05-01")
    book.add_metadata("DC", "description", "<p>A short <i>test</i> novel of the sea.</p>")
    book.add_metadata(
        None, "meta", "Lights of the Coast", {"property": "belongs-to-collection", "id": "c1"}
    )
    book.add_metadata(None, "meta", "series", {"refines": "#c1", "property": "collection-type"})
    book.add_metadata(None, "meta", "2", {"refines": "#c1", "property": "group-position"})
    book.set_cover("cover.png", cover_png())
    front = [
        _page(
            "Title Page",
            f'<section epub:type="titlepage"><h1>{TITLE}</h1><p>{AUTHOR}</p></section>',
        ),
        _page(
            "Copyright",
            f'<section epub:type="copyright-page"><p>{MATTER_WORDS["copyright"]}</p></section>',
        ),
        _page(
            "Dedication",
            f'<section epub:type="dedication"><p>{MATTER_WORDS["dedication"]}</p></section>',
        ),
        _page(
            "Contents",
            '<nav epub:type="toc"><h1>Contents</h1><ol>'
            + "".join(f"<li><a href='#'>{t}</a></li>" for t in CHAPTERS)
            + "</ol></nav>",
        ),
    ]
    chapters = [_chapter3(i, t, w) for i, (t, w) in enumerate(zip(CHAPTERS, WORDS, strict=True), 1)]
    back = [
        _page(
            "Acknowledgements",
            '<section epub:type="acknowledgments"><h1>Acknowledgements</h1>'
            f"<p>{MATTER_WORDS['acknowledgements']}</p></section>",
        ),
        _page(
            "About the Author",
            f"<section><h1>About the Author</h1><p>{MATTER_WORDS['about']}</p></section>",
        ),
    ]
    for item in front + chapters + back:
        book.add_item(item)
    book.toc = [
        epub.Link(item.file_name, item.title, item.id) for item in front[1:] + chapters + back
    ]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["cover", "nav", *front, *chapters, *back]
    epub.write_epub(str(path), book)
    return path


def _chapter2(number: int, title: str, words: str) -> epub.EpubHtml:
    text = words.format(
        n=f'<a href="#fn{number}" id="ref{number}"><sup>{number}</sup></a>',
        p=f'<span class="pagenum">{number * 7}</span>',
    )
    return _page(
        title,
        f'<h2 class="chapter">Chapter {number}</h2><h1>{title}</h1><p>{text}</p>'
        f'<div class="notes"><p id="fn{number}"><a href="#ref{number}">{number}.</a>'
        f" {NOTE}</p></div>",
    )


def epub2(path: Path) -> Path:
    book = epub.EpubBook()
    book.set_identifier("lantern-road-2")
    book.set_title(TITLE)
    book.set_language("en")
    book.add_metadata("DC", "creator", AUTHOR, {f"{{{OPF}}}role": "aut"})
    book.add_metadata("DC", "creator", "Ivo Illustrator", {f"{{{OPF}}}role": "ill"})
    book.add_metadata("DC", "identifier", ISBN, {f"{{{OPF}}}scheme": "ISBN"})
    book.add_metadata("DC", "publisher", "Harbour Press")
    book.add_metadata("DC", "date", "1998")
    book.add_metadata(
        None, "meta", "", {"name": "calibre:series", "content": "Lights of the Coast"}
    )
    book.add_metadata(None, "meta", "", {"name": "calibre:series_index", "content": "3.0"})
    book.set_cover("images/cover.png", cover_png(), create_page=False)
    copyright_page = _page("Copyright", f"<p>{MATTER_WORDS['copyright']}</p>")
    dedication = _page("Dedication", f"<p><i>{MATTER_WORDS['dedication']}</i></p>")
    chapters = [_chapter2(i, t, w) for i, (t, w) in enumerate(zip(CHAPTERS, WORDS, strict=True), 1)]
    about = _page("About the Author", f"<h1>About the Author</h1><p>{MATTER_WORDS['about']}</p>")
    for item in [copyright_page, dedication, *chapters, about]:
        book.add_item(item)
    # EPUB 2 readers take titles from the NCX; the guide says which pages are which.
    book.toc = [epub.Link(c.file_name, t, c.id) for c, t in zip(chapters, CHAPTERS, strict=True)]
    book.toc.append(epub.Link(about.file_name, "About the Author", about.id))
    book.guide = [
        {"href": copyright_page.file_name, "title": "Copyright", "type": "copyright-page"},
        {"href": dedication.file_name, "title": "Dedication", "type": "dedication"},
        {"href": chapters[0].file_name, "title": "Start", "type": "text"},
    ]
    book.add_item(epub.EpubNcx())
    book.spine = [copyright_page, dedication, *chapters, about]
    epub.write_epub(str(path), book, {"epub3_landmark": False, "epub3_pages": False})
    # ebooklib writes every package as 3.0: make it the EPUB 2 it is (no properties either).
    return rewrite(
        path,
        "EPUB/content.opf",
        lambda opf: re.sub(
            rb' properties="[^"]*"', b"", opf.replace(b'version="3.0"', b'version="2.0"')
        ),
    )


def rewrite(path: Path, name: str, change: Callable[[bytes], bytes] | None) -> Path:
    """`path` with its entry `name` changed (None: removed), the rest as it was."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename == name:
                if change is None:
                    continue
                data = change(data)
            archive.writestr(info, data)
    return path


def add_entry(path: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(name, data)
    return path
