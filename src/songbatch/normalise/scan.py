"""One left-to-right pass of many rewrite rules over a text.

Each rule is a regular expression and a function that says its match aloud. At every point the
earliest match of any rule wins (ties go to the rule listed first), its words replace it, and
the scan goes on after it: what one rule wrote is never read again by another, so "2024-03-15"
said as a date cannot then be read as three numbers, and a respelling from the lexicon is never
normalised. Rules see the original text around their match (look-behinds reach before it).
`rewrite_mapped` also says where each rewrite came from (textmap.py), for the written words of
a chunk of what it wrote.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from songbatch.textmap import Edit, TextMap

__all__ = ["Rule", "rewrite", "rewrite_mapped"]


@dataclass(frozen=True)
class Rule:
    """`speak(match)` is the match's words, or None when this match is not the rule's after
    all (a "St." that is neither Saint nor Street): the text is then left to later rules."""

    name: str
    pattern: re.Pattern[str]
    speak: Callable[[re.Match[str]], str | None]


def rewrite(text: str, rules: Sequence[Rule]) -> str:
    return rewrite_mapped(text, rules)[0]


def rewrite_mapped(text: str, rules: Sequence[Rule]) -> tuple[str, TextMap]:
    pieces: list[str] = []
    edits: list[Edit] = []
    pos = written = 0  # in the text, and in what is written of it so far
    upcoming = [rule.pattern.search(text) for rule in rules]
    while True:
        best = _earliest(text, rules, upcoming, pos)
        if best is None:
            break
        index, match = best
        spoken = rules[index].speak(match) if match.end() > match.start() else None
        if spoken is None:
            upcoming[index] = rules[index].pattern.search(text, match.start() + 1)
            continue
        pieces += [text[pos : match.start()], spoken]
        written += match.start() - pos
        edits += _edits(match.start(), match.end(), written, spoken)
        written += len(spoken)
        pos = match.end()
    pieces.append(text[pos:])
    return "".join(pieces), TextMap(tuple(edits))


def _edits(start: int, end: int, at: int, spoken: str) -> list[Edit]:
    """text[start:end] said as `spoken` from `at` on. Its leading and trailing spaces are
    edits of their own, written from nothing: the chunker drops them, and a chunk that
    starts after them starts at the rewrite, not inside it (textmap.py)."""
    words = spoken.strip()
    first = at + (spoken.find(words) if words else len(spoken))
    said = Edit(start, end, first, first + len(words))
    return [Edit(start, start, at, first), said, Edit(end, end, said.target_end, at + len(spoken))]


def _earliest(
    text: str, rules: Sequence[Rule], upcoming: list[re.Match[str] | None], pos: int
) -> tuple[int, re.Match[str]] | None:
    """The first match at or after `pos`, refreshing the ones an earlier rewrite overlapped.
    Each rule's next match is kept between calls, so a long chapter costs about one search
    per rule per rewrite, not one per rule per character."""
    best: tuple[int, re.Match[str]] | None = None
    for index, match in enumerate(upcoming):
        if match is not None and match.start() < pos:
            match = upcoming[index] = rules[index].pattern.search(text, pos)
        if match is not None and (best is None or match.start() < best[1].start()):
            best = (index, match)
    return best
