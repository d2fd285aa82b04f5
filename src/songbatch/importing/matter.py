"""Front and back matter: the pages of a book an audiobook leaves out (copyright, contents,
dedication, index, about the author...). Known from EPUB 3's `epub:type`, EPUB 2's guide, or
failing both from a section's title. Prefaces, forewords, introductions, prologues, epilogues,
afterwords and appendices are the book's own text and are read."""

from __future__ import annotations

import re

# EPUB 3 Structural Semantics (https://www.w3.org/TR/epub-ssv-11/) -> what the matter is.
_MATTER_TYPES = {
    "cover": "cover",
    "frontispiece": "cover",
    "titlepage": "title page",
    "halftitlepage": "title page",
    "seriespage": "series page",
    "copyright-page": "copyright",
    "imprint": "copyright",
    "imprimatur": "copyright",
    "colophon": "colophon",
    "dedication": "dedication",
    "toc": "contents",
    "toc-brief": "contents",
    "landmarks": "contents",
    "loi": "contents",
    "lot": "contents",
    "loa": "contents",
    "lov": "contents",
    "page-list": "contents",
    "acknowledgments": "acknowledgements",
    "contributors": "credits",
    "other-credits": "credits",
    "errata": "errata",
    "index": "index",
    "glossary": "glossary",
    "bibliography": "bibliography",
    "endnotes": "notes",
    "footnotes": "notes",
    "rearnotes": "notes",
    "revision-history": "revision history",
    # The broad ones: a closer, specific type ("preface" inside "frontmatter") wins.
    "frontmatter": "front matter",
    "backmatter": "back matter",
}
_BOOK_TYPES = frozenset(
    {
        *("bodymatter", "chapter", "part", "division", "volume", "subchapter"),
        *("prologue", "epilogue", "preface", "foreword", "introduction", "preamble"),
        *("conclusion", "afterword", "appendix", "epigraph", "abstract"),
    }
)

# EPUB 2's <guide> reference types (OPF 2.0.1, section 2.6).
_GUIDE_MATTER = {
    "cover": "cover",
    "title-page": "title page",
    "toc": "contents",
    "loi": "contents",
    "lot": "contents",
    "copyright-page": "copyright",
    "dedication": "dedication",
    "acknowledgements": "acknowledgements",
    "colophon": "colophon",
    "index": "index",
    "glossary": "glossary",
    "bibliography": "bibliography",
    "notes": "notes",
}

_TITLES = {
    "cover": "cover",
    "front cover": "cover",
    "back cover": "cover",
    "title page": "title page",
    "title": "title page",
    "half title": "title page",
    "half title page": "title page",
    "copyright": "copyright",
    "copyright page": "copyright",
    "copyright notice": "copyright",
    "legal notice": "copyright",
    "imprint": "copyright",
    "colophon": "colophon",
    "dedication": "dedication",
    "contents": "contents",
    "table of contents": "contents",
    "toc": "contents",
    "list of illustrations": "contents",
    "illustrations": "contents",
    "list of figures": "contents",
    "list of tables": "contents",
    "acknowledgements": "acknowledgements",
    "acknowledgments": "acknowledgements",
    "acknowledgement": "acknowledgements",
    "acknowledgment": "acknowledgements",
    "credits": "credits",
    "permissions": "credits",
    "index": "index",
    "glossary": "glossary",
    "bibliography": "bibliography",
    "references": "bibliography",
    "further reading": "bibliography",
    "notes": "notes",
    "endnotes": "notes",
    "footnotes": "notes",
    "newsletter": "advertising",
}
_TITLE_PATTERNS = (
    (
        re.compile(r"about the (author|authors|illustrator|translator|editor|publisher)s?\b"),
        "about the author",
    ),
    (re.compile(r"(also|other (books|titles|works)|more (books|titles)) by\b"), "advertising"),
    (re.compile(r"(books|titles|works) by\b|by the same author\b"), "advertising"),
    (re.compile(r"praise for\b"), "advertising"),
    (re.compile(r"(sign up|join) (for|to) (our|the|my)\b.*newsletter"), "advertising"),
    (re.compile(r"copyright\b"), "copyright"),
)


def matter_of_types(types: str) -> str | None:
    """The matter an `epub:type` value names ("copyright-page" -> "copyright"), None when it
    names the book's own text or nothing known. Prefixed values (`z3998:...`) are not EPUB's."""
    tokens = types.split()
    if any(token in _BOOK_TYPES for token in tokens):
        return None
    for token in tokens:
        if token in _MATTER_TYPES:
            return _MATTER_TYPES[token]
    return None


def names_book_text(types: str) -> bool:
    """Whether an `epub:type` value marks the book's own text (a chapter, a preface...)."""
    return any(token in _BOOK_TYPES for token in types.split())


def matter_of_guide_type(kind: str) -> str | None:
    return _GUIDE_MATTER.get(kind.strip().lower())


def matter_of_title(title: str) -> str | None:
    """What a section titled so is, by its words: "Table of Contents" -> "contents",
    "About the Author" -> "about the author"; None for anything else."""
    words = " ".join(re.sub(r"[^\w\s]", " ", title.lower()).split())
    if words in _TITLES:
        return _TITLES[words]
    for pattern, matter in _TITLE_PATTERNS:
        if pattern.match(words):
            return matter
    return None
