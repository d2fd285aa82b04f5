"""One EPUB content document (XHTML) -> the blocks a voice reads: paragraphs and headings,
with what no narrator says aloud left out: footnote markers and the notes themselves, page
numbers, scripts, images, a document's own table of contents."""

from __future__ import annotations

import html.entities
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from lxml import etree

from songbatch.importing.matter import matter_of_types, names_book_text
from songbatch.importing.sections import Block

EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"

_UNSPOKEN_TAGS = frozenset(
    {
        *("head", "script", "style", "template", "noscript", "nav"),
        *("svg", "math", "img", "picture", "object", "embed", "iframe", "canvas"),
        *("audio", "video", "button", "input", "select", "textarea"),
    }
)
_BLOCK_TAGS = frozenset(
    {
        *("p", "div", "section", "article", "aside", "header", "footer", "main", "body"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "hgroup", "blockquote", "pre", "address"),
        *("ul", "ol", "li", "dl", "dt", "dd", "table", "tr", "td", "th", "caption"),
        *("figure", "figcaption", "hr", "center"),
    }
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
# Notes, their markers and page numbers, by EPUB 3 type, ARIA role (DPUB-ARIA) or the class
# names converters (calibre, Project Gutenberg's HTML) give them.
_UNSPOKEN_TYPES = frozenset(
    {
        *("noteref", "annoref", "pagebreak", "page-list", "toc", "toc-brief", "landmarks"),
        *("footnote", "endnote", "rearnote", "note", "footnotes", "endnotes", "rearnotes"),
        *("annotation", "backlink"),
    }
)
_UNSPOKEN_ROLES = frozenset(
    {
        *("doc-noteref", "doc-pagebreak", "doc-footnote", "doc-endnote", "doc-endnotes"),
        *("doc-toc", "doc-pagelist", "doc-backlink"),
    }
)
_UNSPOKEN_CLASSES = frozenset(
    {
        *("pagenum", "page-number", "pagenumber", "page_number", "pageno"),
        *("footnote", "footnotes", "endnote", "endnotes", "noteref", "footnote-ref", "fnref"),
    }
)
_NOTE_REF_TYPES = frozenset({"noteref", "annoref"})
# What a footnote marker reads: 1, [12], (3), *, †; a superscript letter is left alone
# ("1<sup>er</sup>", "19<sup>th</sup>").
_MARKER = re.compile(r"\s*[\[(]?\s*(?:\d{1,3}|[*†‡§¶]+)\s*[\])]?\s*")
# "10 m<sup>2</sup>", "10<sup>6</sup>": an exponent after a number or a unit, not a note.
_EXPONENT_BASE = re.compile(r"\d\s?[^\W\d_]{0,3}$")
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
_ENTITY = re.compile(rb"&([A-Za-z][A-Za-z0-9]*);")


@dataclass(frozen=True)
class Document:
    name: str  # the item's path in the package, as hrefs name it
    blocks: tuple[Block, ...]
    anchors: dict[str, int]  # element id -> index of the first block at or after it
    title: str | None = None  # <title>
    matter: str | None = None  # what its <body> says it is
    book_text: bool = False  # its <body> says it is the book's own text (bodymatter, chapter)


@dataclass
class NoteTargets:
    """The elements noterefs point at, per document: footnote bodies a voice must not read
    inline, whatever they are marked as."""

    ids: dict[str, set[str]] = field(default_factory=dict)

    def add(self, document: str, href: str) -> None:
        path, _, fragment = href.partition("#")
        if not fragment:
            return
        target = posixpath.normpath(posixpath.join(posixpath.dirname(document), unquote(path)))
        self.ids.setdefault(target if path else document, set()).add(unquote(fragment))

    def of(self, document: str) -> set[str]:
        return self.ids.get(document, set())


def parse(content: bytes) -> Any:
    """The document's root element. XHTML is XML (an HTML parser would read `<span/>` as an
    open tag and swallow the text after it); HTML's named entities, which EPUB 2 documents
    may use through their DTD, are made numeric first since no DTD is loaded."""

    def numeric(match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode("ascii")
        if name in _XML_ENTITIES or name not in html.entities.name2codepoint:
            return match.group(0)
        return b"&#%d;" % html.entities.name2codepoint[name]

    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
    root = etree.fromstring(_ENTITY.sub(numeric, content), parser)
    if root is None:
        raise ValueError("not an XHTML document")
    return root


def note_references(root: Any, document: str, targets: NoteTargets) -> None:
    """Record where the document's footnote markers point."""
    for element in root.iter("{*}a"):
        href = element.get("href")
        if href and "#" in href and _is_note_link(element):
            targets.add(document, href)


def extract(root: Any, name: str, skip_ids: set[str]) -> Document:
    title_element = next(root.iter("{*}title"), None)
    title = "" if title_element is None else " ".join("".join(title_element.itertext()).split())
    body = next(root.iter("{*}body"), root)
    walker = _Walker(_note_bodies(root, skip_ids))
    walker.visit(body, None)
    walker.flush()
    types = _types(body)
    return Document(
        name=name,
        blocks=tuple(walker.blocks),
        anchors=walker.anchors,
        title=title or None,
        matter=matter_of_types(types),
        book_text=names_book_text(types),
    )


def _note_bodies(root: Any, ids: set[str]) -> set[Any]:
    """The elements holding the notes `ids` name: the element itself, or the paragraph (list
    item, aside...) around an inline anchor such as `<p><a id="n1">1</a> The note.</p>`."""
    bodies = set()
    for element in root.iter():
        if not isinstance(element.tag, str) or element.get("id") not in ids:
            continue
        while _local(element) not in _BLOCK_TAGS and element.getparent() is not None:
            element = element.getparent()
        # An anchor on a whole chapter (a note linking back to it) must not silence it.
        if _local(element) != "body" and not _holds_heading(element):
            bodies.add(element)
    return bodies


class _Walker:
    def __init__(self, skip: set[Any]) -> None:
        self.skip = skip
        self.blocks: list[Block] = []
        self.anchors: dict[str, int] = {}
        self.buffer: list[str] = []
        self.level = 0
        self.matter: str | None = None

    def flush(self) -> None:
        text = " ".join("".join(self.buffer).split())
        self.buffer = []
        if text:
            self.blocks.append(Block(text, self.level, self.matter))

    def visit(self, element: Any, matter: str | None) -> None:
        if not isinstance(element.tag, str):  # a comment or processing instruction
            return
        tag = _local(element)
        identifier = element.get("id")
        if identifier:
            self.anchors.setdefault(identifier, len(self.blocks))
        if self._unspoken(element, tag):
            return
        types = _types(element)
        if types:
            matter = None if names_book_text(types) else (matter_of_types(types) or matter)
        is_block = tag in _BLOCK_TAGS
        if is_block:
            self.flush()
        outer = (self.level, self.matter)
        self.level = _HEADINGS.get(tag, self.level)
        self.matter = matter
        if tag == "br":
            self.buffer.append(" ")
        if element.text:
            self.buffer.append(element.text)
        for child in element:
            self.visit(child, matter)
            if child.tail:
                self.buffer.append(child.tail)
        if is_block:
            self.flush()
        self.level, self.matter = outer

    def _unspoken(self, element: Any, tag: str) -> bool:
        if tag in _UNSPOKEN_TAGS:
            return True
        if element in self.skip:
            return True
        if set(_types(element).split()) & _UNSPOKEN_TYPES:
            return True
        if (element.get("role") or "") in _UNSPOKEN_ROLES:
            return True
        if set((element.get("class") or "").split()) & _UNSPOKEN_CLASSES:
            return True
        if tag == "sup" and _is_marker(element):
            return not _EXPONENT_BASE.search("".join(self.buffer)[-8:])
        return tag == "a" and _is_note_link(element)


def _types(element: Any) -> str:
    return str(element.get(EPUB_TYPE) or element.get("epub:type") or "")


def _is_marker(element: Any) -> bool:
    return _MARKER.fullmatch("".join(element.itertext())) is not None


def _is_note_link(element: Any) -> bool:
    """A link that is a footnote marker: said so, or a marker's text in a superscript (a bare
    "2" linking elsewhere may be a numbered contents entry, read or not, but not a note)."""
    if set(_types(element).split()) & _NOTE_REF_TYPES:
        return True
    if element.get("role") == "doc-noteref":
        return True
    if set((element.get("class") or "").split()) & {"noteref", "footnote-ref", "fnref"}:
        return True
    if not _is_marker(element):
        return False
    parent = element.getparent()
    in_sup = parent is not None and _local(parent) == "sup"
    return in_sup or any(_local(child) == "sup" for child in element)


def _holds_heading(element: Any) -> bool:
    return any(_local(child) in _HEADINGS for child in element.iter())


def _local(element: Any) -> str:
    """An element's tag without its namespace, lower case; "" for comments and PIs."""
    if not isinstance(element.tag, str):
        return ""
    return str(etree.QName(element).localname).lower()
