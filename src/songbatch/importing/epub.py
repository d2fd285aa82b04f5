"""EPUB 2 and 3 through ebooklib: chapters from the navigation document (EPUB 3) or the NCX
(EPUB 2), else from headings, else one per spine document; metadata and cover from the
package. Refused with one line: a file that is not an EPUB, one that is damaged (a document
its spine names is missing) and one whose content is DRM-encrypted."""

from __future__ import annotations

import posixpath
import re
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lxml import etree

from songbatch.importing import xhtml
from songbatch.importing.book import Book, Cover, Metadata, SourceError, SplitMode, SplitOptions
from songbatch.importing.fields import usable_cover, year_of
from songbatch.importing.matter import matter_of_guide_type, matter_of_title, matter_of_types
from songbatch.importing.sections import (
    Block,
    Section,
    chapters_of,
    split_at_headings,
    split_at_pattern,
)

_OPF = "http://www.idpf.org/2007/opf"
_OPF_ROLE = f"{{{_OPF}}}role"
_OPF_SCHEME = f"{{{_OPF}}}scheme"
_ENCRYPTION = "META-INF/encryption.xml"
# Encryption that only obfuscates embedded fonts (IDPF, Adobe): the text is readable.
_FONT_OBFUSCATION = frozenset(
    {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
)
_DRM_FILES = {
    "META-INF/rights.xml": "Adobe ADEPT",
    "META-INF/license.lcpl": "Readium LCP",
    "META-INF/sinf.xml": "Apple FairPlay",
}
NOT_IN_CONTENTS = "not in the table of contents"


def read_epub(path: Path, options: SplitOptions) -> Book:
    _check_package(path)
    book = _load(path)
    documents = _documents(path, book)
    kinds = _matter_by_document(book)
    chapters, split = _chapters(path, book, documents, kinds, options)
    cover, cover_note = _cover(book)
    return Book(
        source=path,
        kind="epub",
        split=split,
        metadata=_metadata(book),
        chapters=tuple(chapters),
        cover=cover,
        notes=() if cover_note is None else (cover_note,),
    )


# --- the package ----------------------------------------------------------------------------


def _check_package(path: Path) -> None:
    """Not a zip, a zip that is no EPUB, DRM: each said as such before ebooklib reads it."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "META-INF/container.xml" not in names:
                raise SourceError(path, "is a zip file but not an EPUB (no META-INF/container.xml)")
            for name, scheme in _DRM_FILES.items():
                if name in names:
                    raise SourceError(path, f"is DRM-protected ({scheme}, {name}): {_DRM_HINT}")
            if _ENCRYPTION in names:
                encrypted = _encrypted_content(archive.read(_ENCRYPTION))
                if encrypted:
                    raise SourceError(
                        path,
                        f"is DRM-protected: {_ENCRYPTION} says its content is encrypted"
                        f" ({encrypted[0]}{' and more' if len(encrypted) > 1 else ''}):"
                        f" {_DRM_HINT}",
                    )
    except zipfile.BadZipFile:
        raise SourceError(path, "is not an EPUB (not a zip file)") from None
    except OSError as exc:
        raise SourceError(path, f"cannot be read: {exc.strerror or exc}") from None


_DRM_HINT = "songbatch cannot read its text; import a DRM-free copy"


def _encrypted_content(data: bytes) -> list[str]:
    """The files encryption.xml says are encrypted by something other than font obfuscation."""
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return ["META-INF/encryption.xml, which cannot be read"]
    encrypted = []
    for item in root.iter("{*}EncryptedData"):
        method = next(item.iter("{*}EncryptionMethod"), None)
        if method is not None and method.get("Algorithm") in _FONT_OBFUSCATION:
            continue
        reference = next(item.iter("{*}CipherReference"), None)
        encrypted.append(unquote(reference.get("URI", "?")) if reference is not None else "?")
    return encrypted


def _load(path: Path) -> Any:
    from ebooklib import epub

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ebooklib warns about its own future defaults
            try:
                return epub.read_epub(str(path), {"ignore_ncx": True})
            except IndexError:
                # A navigation document with no toc <nav>: the NCX may still have one.
                return epub.read_epub(str(path), {"ignore_ncx": False})
    except KeyError as exc:
        missing = str(exc.args[0]) if exc.args else "a file"
        missing = re.sub(r"^There is no item named '(.*)' in the archive$", r"\1", missing)
        raise SourceError(
            path, f"is a damaged EPUB: {missing} is listed in its package but not in the file"
        ) from None
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise SourceError(path, f"is not a readable EPUB ({detail})") from None


# --- documents ------------------------------------------------------------------------------


def _documents(path: Path, book: Any) -> list[xhtml.Document]:
    """The spine's linear content documents in reading order, footnotes and markers left out."""
    from ebooklib import epub

    items = []
    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None:
            raise SourceError(
                path, f"is a damaged EPUB: its spine names {idref!r}, which its manifest lacks"
            )
        if linear != "no" and isinstance(item, epub.EpubHtml) and not _is_unspoken(item):
            items.append(item)
    roots = []
    targets = xhtml.NoteTargets()
    for item in items:
        # The bytes as stored: get_content() rebuilds the page from a template and drops
        # <body>'s attributes, epub:type among them.
        try:
            root = xhtml.parse(item.content)
        except (ValueError, etree.XMLSyntaxError):
            raise SourceError(path, f"{item.get_name()} is not a readable XHTML document") from None
        xhtml.note_references(root, item.get_name(), targets)
        roots.append((item.get_name(), root))
    return [xhtml.extract(root, name, targets.of(name)) for name, root in roots]


def _is_unspoken(item: Any) -> bool:
    from ebooklib import epub

    return isinstance(item, (epub.EpubNav, epub.EpubCoverHtml))


def _matter_by_document(book: Any) -> dict[str, str]:
    """Documents the package calls front or back matter: EPUB 2's guide, EPUB 3's landmarks."""
    kinds = {}
    for reference in getattr(book, "guide", []) or []:
        matter = matter_of_guide_type(reference.get("type") or "")
        href = reference.get("href") or ""
        if matter and href and "#" not in href:
            kinds[unquote(href)] = matter
    for name, types in _landmarks(book):
        matter = matter_of_types(types)
        if matter:
            kinds[name] = matter
    return kinds


def _landmarks(book: Any) -> Iterable[tuple[str, str]]:
    from ebooklib import epub

    for nav in book.get_items():
        if not isinstance(nav, epub.EpubNav):
            continue
        try:
            root = xhtml.parse(nav.content)
        except (ValueError, etree.XMLSyntaxError):
            continue
        for element in root.iter("{*}nav"):
            if "landmarks" not in (element.get(xhtml.EPUB_TYPE) or "").split():
                continue
            for link in element.iter("{*}a"):
                href = link.get("href") or ""
                if href and "#" not in href:
                    yield _resolve(nav.get_name(), href), link.get(xhtml.EPUB_TYPE) or ""


def _resolve(base: str, href: str) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), unquote(href)))


# --- chapters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    title: str
    document: str
    fragment: str | None


def _chapters(
    path: Path,
    book: Any,
    documents: list[xhtml.Document],
    kinds: dict[str, str],
    options: SplitOptions,
) -> tuple[list[Any], str]:
    mode = options.mode
    if mode is SplitMode.PATTERN:
        assert options.pattern is not None
        return chapters_of(split_at_pattern(_stream(documents, kinds), options.pattern)), "pattern"
    if mode in (SplitMode.AUTO, SplitMode.TOC):
        entries = _toc_entries(book)
        if entries or mode is SplitMode.TOC:
            if not entries:
                raise SourceError(
                    path,
                    "has no table of contents (navigation document or NCX) to split at:"
                    " try --split headings",
                )
            chapters = chapters_of(_toc_sections(documents, entries, kinds))
            if mode is SplitMode.TOC or sum(c.matter is None for c in chapters) > 1:
                return chapters, "toc"
    by_headings = split_at_headings(_stream(documents, kinds))
    if by_headings is not None:
        chapters = chapters_of(by_headings)
        if mode is SplitMode.HEADINGS or sum(c.matter is None for c in chapters) > 1:
            return chapters, "headings"
    elif mode is SplitMode.HEADINGS:
        raise SourceError(path, "has no headings to split at: try --split toc")
    return chapters_of(_spine_sections(documents, kinds)), "spine"


def _stream(documents: Sequence[xhtml.Document], kinds: dict[str, str]) -> list[Block]:
    """Every document's blocks in reading order, those of matter documents marked so."""
    blocks = []
    for document in documents:
        matter = _document_matter(document, kinds)
        for block in document.blocks:
            blocks.append(block if block.matter or not matter else _marked(block, matter))
    return blocks


def _marked(block: Block, matter: str) -> Block:
    return Block(block.text, block.level, matter)


def _document_matter(document: xhtml.Document, kinds: dict[str, str]) -> str | None:
    if document.book_text:
        return None
    return kinds.get(document.name) or document.matter


def _toc_entries(book: Any) -> list[_Entry]:
    from ebooklib import epub

    navs = [item for item in book.get_items() if isinstance(item, epub.EpubNav)]
    ncx = next((item for item in book.get_items() if isinstance(item, epub.EpubNcx)), None)
    # ebooklib resolves a navigation document's hrefs against its folder; an NCX's it leaves
    # as written, relative to the NCX.
    base = "" if navs or ncx is None else posixpath.dirname(ncx.get_name())
    return _flatten(book.toc, base)


def _flatten(nodes: Iterable[Any], base: str) -> list[_Entry]:
    """The toc's entries in order. A section's children are chapters of their own when they
    start other documents (a part's chapters); when they only point into their parent's
    document they are its subsections, and stay in its text."""
    entries: list[_Entry] = []
    for node in nodes:
        if isinstance(node, (tuple, list)):
            section, children = node[0], node[1]
            entry = _entry(section.title, getattr(section, "href", ""), base)
            below = _flatten(children, base)
            if entry is not None:
                entries.append(entry)
            if entry is None or any(child.document != entry.document for child in below):
                entries.extend(below)
        else:
            entry = _entry(getattr(node, "title", ""), getattr(node, "href", ""), base)
            if entry is not None:
                entries.append(entry)
    return entries


def _entry(title: str | None, href: str | None, base: str) -> _Entry | None:
    if not href:
        return None
    path, _, fragment = href.partition("#")
    document = posixpath.normpath(posixpath.join(base, unquote(path)))
    return _Entry(" ".join((title or "").split()), document, unquote(fragment) or None)


_Start = tuple[int, int, _Entry]  # (document index, block index, entry)


def _toc_sections(
    documents: list[xhtml.Document], entries: list[_Entry], kinds: dict[str, str]
) -> list[Section]:
    """A section from each toc entry to the next. Documents the toc does not name join the
    section before them (a chapter in two files), unless they are matter of their own; those
    before the first entry are sections of their own, not in the contents."""
    starts = _starts(documents, entries)
    if not starts:
        return []
    sections = [_leading_section(document, kinds) for document in documents[: starts[0][0]]]
    ends = [(doc_i, block_i) for doc_i, block_i, _ in starts[1:]] + [(len(documents), 0)]
    for (doc_i, block_i, entry), (end_doc, end_block) in zip(starts, ends, strict=True):
        matter = _document_matter(documents[doc_i], kinds) if block_i == 0 else None
        section = Section(entry.title or None, matter=matter)
        for i in range(doc_i, min(end_doc + 1, len(documents))):
            document = documents[i]
            if i > doc_i and (_document_matter(document, kinds) or _titled_matter(document)):
                continue
            lo = block_i if i == doc_i else 0
            hi = end_block if i == end_doc else len(document.blocks)
            section.blocks.extend(document.blocks[lo:hi])
        sections.append(section)
    return sections


def _starts(documents: list[xhtml.Document], entries: list[_Entry]) -> list[_Start]:
    """Where each entry starts, in reading order; entries into no spine document dropped."""
    index = {document.name: i for i, document in enumerate(documents)}
    starts = []
    for entry in entries:
        if entry.document in index:
            doc_i = index[entry.document]
            starts.append((doc_i, documents[doc_i].anchors.get(entry.fragment or "", 0), entry))
    return sorted(starts, key=lambda start: (start[0], start[1]))


def _leading_section(document: xhtml.Document, kinds: dict[str, str]) -> Section:
    """A document before the toc's first entry: matter of the kind it says, else matter for
    not being in the contents at all (a title page, a half title)."""
    matter = _document_matter(document, kinds) or _titled_matter(document)
    section = Section(_heading_or_title(document), list(document.blocks), matter)
    section.matter = section.marked_matter() or NOT_IN_CONTENTS
    return section


def _titled_matter(document: xhtml.Document) -> str | None:
    title = _heading_or_title(document)
    return None if title is None else matter_of_title(title)


def _heading_or_title(document: xhtml.Document) -> str | None:
    heading = next((block.text for block in document.blocks[:3] if block.level), None)
    return heading or document.title


def _spine_sections(documents: list[xhtml.Document], kinds: dict[str, str]) -> list[Section]:
    return [
        Section(
            _heading_or_title(document), list(document.blocks), _document_matter(document, kinds)
        )
        for document in documents
    ]


# --- metadata and cover ---------------------------------------------------------------------


def _metadata(book: Any) -> Metadata:
    refines = _refinements(book)
    titles = _dc(book, "title")
    main = [
        v for v, attrs in titles if refines.get(attrs.get("id"), {}).get("title-type") != "subtitle"
    ]
    subtitle = [
        v for v, attrs in titles if refines.get(attrs.get("id"), {}).get("title-type") == "subtitle"
    ]
    authors = [
        value
        for value, attrs in _dc(book, "creator")
        if (attrs.get(_OPF_ROLE) or refines.get(attrs.get("id"), {}).get("role") or "aut") == "aut"
    ]
    series, part = _series(book, refines)
    return Metadata(
        title=main[0] if main else None,
        author=", ".join(authors) or None,
        language=next(iter(v for v, _ in _dc(book, "language")), None),
        description=_plain(next(iter(v for v, _ in _dc(book, "description")), None)),
        year=next((year for v, _ in _dc(book, "date") if (year := year_of(v))), None),
        publisher=next(iter(v for v, _ in _dc(book, "publisher")), None),
        series=series,
        series_part=part,
        subtitle=subtitle[0] if subtitle else None,
        isbn=_isbn(book),
    )


def _dc(book: Any, name: str) -> list[tuple[str, dict[str, str]]]:
    try:
        values = book.get_metadata("DC", name)
    except KeyError:  # no Dublin Core metadata at all
        return []
    return [(value, attrs or {}) for value, attrs in values if value and value.strip()]


def _metas(book: Any) -> list[tuple[str | None, dict[str, str]]]:
    """Every OPF <meta>, whichever key ebooklib filed it under (it files `name="a:b"` metas
    under "meta" or their prefix depending on the namespaces declared)."""
    found: list[tuple[str | None, dict[str, str]]] = []
    for namespace in book.metadata.values():
        for values in namespace.values():
            found.extend((value, attrs) for value, attrs in values if isinstance(attrs, dict))
    return [(value, attrs) for value, attrs in found if "property" in attrs or "name" in attrs]


def _refinements(book: Any) -> dict[str | None, dict[str, str]]:
    """EPUB 3 `<meta refines="#id" property="p">v</meta>`: id -> {p: v}."""
    refined: dict[str | None, dict[str, str]] = {}
    for value, attrs in _metas(book):
        target = attrs.get("refines", "")
        if target.startswith("#") and value:
            refined.setdefault(target[1:], {})[attrs.get("property", "")] = value.strip()
    return refined


def _series(book: Any, refines: dict[str | None, dict[str, str]]) -> tuple[str | None, str | None]:
    named = {
        attrs.get("name"): attrs.get("content") for _, attrs in _metas(book) if "name" in attrs
    }
    if named.get("calibre:series"):
        return named["calibre:series"], _part(named.get("calibre:series_index"))
    for value, attrs in _metas(book):
        if attrs.get("property") == "belongs-to-collection" and value:
            refined = refines.get(attrs.get("id"), {})
            if refined.get("collection-type", "series") == "series":
                return value, _part(refined.get("group-position"))
    return None, None


def _part(value: str | None) -> str | None:
    """calibre writes a series index as a float ("2.0"): a whole number is kept whole."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else value.strip()


def _isbn(book: Any) -> str | None:
    for value, attrs in _dc(book, "identifier"):
        text = value.strip()
        if text.lower().startswith("urn:isbn:"):
            return text[9:]
        if (attrs.get(_OPF_SCHEME) or attrs.get("scheme") or "").upper() == "ISBN":
            return text
    return None


def _plain(html_text: str | None) -> str | None:
    """A description as text: publishers often write HTML into it."""
    if not html_text:
        return None
    if "<" not in html_text:
        return html_text
    from lxml import html

    try:
        return " ".join(html.fromstring(f"<div>{html_text}</div>").text_content().split())
    except (etree.ParserError, ValueError):
        return html_text


def _cover(book: Any) -> tuple[Cover | None, str | None]:
    data = _cover_bytes(book)
    return (None, None) if data is None else usable_cover(data)


def _cover_bytes(book: Any) -> bytes | None:
    import ebooklib

    for item in book.get_items_of_type(ebooklib.ITEM_COVER):
        return bytes(item.content)
    # EPUB 2: <meta name="cover" content="the image's id"/>.
    for _, attrs in _metas(book):
        if attrs.get("name") == "cover" and attrs.get("content"):
            item = book.get_item_with_id(attrs["content"])
            if item is not None and (item.media_type or "").startswith("image/"):
                return bytes(item.content)
    for item in book.get_items_of_type(ebooklib.ITEM_IMAGE):
        if "cover" in (item.get_name() + (item.get_id() or "")).lower():
            return bytes(item.content)
    return None
