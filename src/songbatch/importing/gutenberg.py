"""Project Gutenberg's wrapping of a book: the header (title, author, language) before the
`*** START OF THE PROJECT GUTENBERG EBOOK ... ***` line and the licence after `*** END OF ...`,
removed. Older texts say `THIS PROJECT GUTENBERG EBOOK`, or end their header with the
"*END*THE SMALL PRINT!" line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from songbatch.importing.book import Metadata

_START = re.compile(
    r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK\b.*$", re.IGNORECASE | re.M
)
_SMALL_PRINT_END = re.compile(r"^.*\*END\*\s*THE SMALL PRINT.*$", re.IGNORECASE | re.M)
_END = re.compile(
    r"^\s*\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK\b.*$", re.IGNORECASE | re.M
)
# The line before the END marker in many texts ("End of the Project Gutenberg EBook of ...").
_END_LINE = re.compile(r"^\s*End of (?:the )?Project Gutenberg'?s?\b.*$", re.IGNORECASE | re.M)
_FIELD = re.compile(r"^(Title|Author|Language):[^\S\n]*(.+?)\s*$", re.M)


@dataclass(frozen=True)
class Unwrapped:
    body: str
    metadata: Metadata
    found: bool  # whether the text had Project Gutenberg's wrapping at all


def unwrap(text: str) -> Unwrapped:
    start = _START.search(text) or _SMALL_PRINT_END.search(text)
    end = _END.search(text, start.end() if start else 0)
    if start is None and end is None:
        return Unwrapped(text, Metadata(), found=False)
    header = text[: start.start()] if start else ""
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    closings = list(_END_LINE.finditer(body))
    if closings and len(body) - closings[-1].end() < 200:
        body = body[: closings[-1].start()]
    fields = {name.lower(): value for name, value in _FIELD.findall(header)}
    metadata = Metadata(
        title=fields.get("title"), author=fields.get("author"), language=fields.get("language")
    )
    return Unwrapped(body, metadata, found=True)
