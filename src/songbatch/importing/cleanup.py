"""Text as typed, scanned or exported -> the paragraphs a voice reads: hard-wrapped lines
joined, words hyphenated across a line break made whole again, one paragraph per line with a
blank line between (the form `songbatch.text` turns into paragraph pauses). Quotes, dashes
and everything else typographic are kept as they are."""

from __future__ import annotations

import re
from collections.abc import Iterable

from songbatch import text as textlib

_WORD = r"[^\W\d_]+"
_COMPOUND = re.compile(rf"{_WORD}(?:-{_WORD})+")
_PLAIN_WORD = re.compile(_WORD)
_HYPHEN_AT_END = re.compile(rf"({_WORD})-$")  # "some-": a word, then one hyphen (not "--")
_WORD_AT_START = re.compile(_WORD)
_TIGHT_DASH_AT_END = re.compile(r"(?<=\S)(?:--|—)$")  # "think--": the dash binds both sides
_UNDERSCORE_EMPHASIS = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


class Vocabulary:
    """The words and hyphenated compounds a text uses inside its lines: the evidence for what
    a hyphen at the end of a line is."""

    def __init__(self, text: str) -> None:
        self.words: set[str] = set()
        self.compounds: set[str] = set()
        for line in text.splitlines():
            # A hyphen that ends a line is the question, never evidence.
            body = line.rstrip().removesuffix("-")
            self.compounds.update(c.lower() for c in _COMPOUND.findall(body))
            self.words.update(w.lower() for w in _PLAIN_WORD.findall(body))

    def keeps_hyphen(self, left: str, right: str) -> bool:
        """Whether "left-" at a line's end and "right" at the next line's start are a real
        compound ("rabbit-hole") rather than one word broken for the line ("some-thing")."""
        if f"{left}-{right}".lower() in self.compounds:
            return True
        if (left + right).lower() in self.words:
            return False
        # "Anglo-Saxon", "non-English": a capital after the hyphen is a compound's part. With
        # no evidence either way the break is taken as typesetting, the commoner case.
        return right[:1].isupper()


def join_lines(lines: Iterable[str], vocabulary: Vocabulary) -> str:
    """One paragraph's hard-wrapped lines as one line."""
    joined = ""
    for raw in lines:
        line = " ".join(raw.split())
        if not line:
            continue
        if not joined:
            joined = line
            continue
        hyphen = _HYPHEN_AT_END.search(joined)
        word = _WORD_AT_START.match(line)
        if hyphen and word:
            keep = vocabulary.keeps_hyphen(hyphen.group(1), word.group())
            joined = (joined if keep else joined[:-1]) + line
        elif _TIGHT_DASH_AT_END.search(joined):
            joined += line
        else:
            joined += " " + line
    return joined


def split_blocks(text: str) -> list[list[str]]:
    """Text -> its blocks (the runs of lines between blank lines), each a list of lines."""
    blocks = []
    for chunk in _BLANK_LINE.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [line for line in chunk.split("\n") if line.strip()]
        if lines:
            blocks.append(lines)
    return blocks


def without_underscore_emphasis(text: str) -> str:
    """`_word_` (plain text's italics, as Project Gutenberg writes them) -> `word`."""
    return _UNDERSCORE_EMPHASIS.sub(r"\1", text)


def chapter_text(paragraphs: Iterable[str]) -> str:
    """Paragraphs -> a text file's content: each normalised (NFC, one line, plain spaces),
    those with nothing to say (a "* * *" scene break) left out, a blank line between."""
    kept = []
    for paragraph in paragraphs:
        line = textlib.normalize(paragraph).replace("\n\n", " ")
        if textlib.is_speakable(line):
            kept.append(line)
    return "\n\n".join(kept)
