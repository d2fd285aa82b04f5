"""Turn a chapter's text into speech chunks a TTS engine can read well.

Engines degrade on long inputs (Chatterbox past ~300 characters, espeak past ~400), so a
chapter is cut into chunks of whole sentences where possible. Chunks never span paragraphs,
so the renderer can put a longer pause after `Chunk.paragraph_end` chunks.

Everything below works on *spans* (start, end) into one normalised paragraph string: a chunk
is a slice of its paragraph, so no text is rebuilt piecewise and the cost stays linear. A chunk
keeps its span in the normalised text (`Chunk.start`, `Chunk.end`), and `normalize_mapped`
says where the normalised text came from, so a chunk can be traced back to what was written.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field

from songbatch.textmap import Edit, TextMap

__all__ = [
    "Chunk",
    "chunk_text",
    "estimate_seconds",
    "has_visible_text",
    "is_speakable",
    "normalize",
    "normalize_mapped",
    "split_paragraphs",
    "split_sentences",
    "starts_with_title",
]

MIN_MAX_CHARS = 20

Span = tuple[int, int]

# --- normalisation ---------------------------------------------------------------------------

# Separators that mean "new line" to str.splitlines(); dropping them would glue words together.
_LINE_BREAKS = {"\r": "\n", "\v": "\n", "\f": "\n", "\x85": "\n", "\u2028": "\n"}
_SPACE_RUN = re.compile(r" {2,}")
_SPACES_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{2,}")


def _replacement(ch: str) -> str | None:
    """What `ch` becomes during cleanup, or None to keep it as is."""
    if ch in (" ", "\n"):
        return None
    if ch == "\t":
        return " "
    if ch == "\u2029":  # PARAGRAPH SEPARATOR
        return "\n\n"
    if ch in _LINE_BREAKS:
        return _LINE_BREAKS[ch]
    category = unicodedata.category(ch)
    if category == "Zs":  # NBSP, narrow NBSP, em space, ideographic space...
        return " "
    if category in ("Cc", "Cf", "Cs"):  # controls, zero-width and bidi marks, lone surrogates
        return ""
    return None


def _clean_chars(text: str) -> str:
    """Replace or drop odd characters so that only ' ' and '\\n' remain as whitespace."""
    # Classify each *distinct* character once: a novel has a few hundred, far fewer than
    # the 1.1M code points a full translation table would need to be built from.
    mapping = {ch: rep for ch in set(text) if (rep := _replacement(ch)) is not None}
    if not mapping:
        return text
    pattern = re.compile("|".join(map(re.escape, sorted(mapping))))
    return pattern.sub(lambda m: mapping[m.group()], text)


def normalize(text: str) -> str:
    """Canonical form: NFC, plain spaces, one line per paragraph, paragraphs joined by "\\n\\n".

    Single newlines are hard wraps (Project Gutenberg style) and become spaces; one or more
    blank lines separate paragraphs. Idempotent.
    """
    text = _clean_chars(text.replace("\r\n", "\n"))
    text = _SPACE_RUN.sub(" ", text)
    text = _SPACES_AROUND_NEWLINE.sub("\n", text)
    paragraphs = _BLANK_LINES.split(text.strip(" \n"))
    body = "\n\n".join(p.replace("\n", " ") for p in paragraphs if p)
    # NFC last: removing zero-width characters above can put a base letter next to a
    # combining mark, and composing them only now keeps normalize() idempotent.
    return unicodedata.normalize("NFC", body)


def normalize_mapped(text: str) -> tuple[str, TextMap]:
    """`normalize(text)` and where its characters came from in `text`."""
    tidy = normalize(text)
    return tidy, (TextMap() if tidy == text else _aligned(text, tidy))


def _aligned(raw: str, tidy: str) -> TextMap:
    """`tidy` (normalize's) against `raw`, in one walk: normalize only drops, collapses or
    replaces whitespace and invisible characters, so where the two differ, raw's run of those
    and tidy's whitespace are one edit; anything else (a character NFC composed) is one for
    one."""
    edits: list[Edit] = []
    i = j = 0
    while i < len(raw) or j < len(tidy):
        if i < len(raw) and j < len(tidy) and raw[i] == tidy[j]:
            i, j = i + 1, j + 1
            continue
        first = (i, j)
        while i < len(raw) and (raw[i].isspace() or _replacement(raw[i]) is not None):
            i += 1
        while j < len(tidy) and tidy[j].isspace():
            j += 1
        if (i, j) == first:
            i, j = min(i + 1, len(raw)), min(j + 1, len(tidy))
        edits.append(Edit(first[0], i, first[1], j))
    return TextMap(tuple(edits))


# --- paragraphs and sentences ----------------------------------------------------------------

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_HAS_ALNUM = re.compile(r"[^\W_]")  # \w minus "_" is exactly str.isalnum()

_CLOSERS = "\"'”’»)\\]"
_CJK_CLOSERS = "\"'”’»)\\]」』）】》"
# Western terminators need whitespace (or the end) after them, which keeps "3.14", "1.000"
# and "example.com" whole; CJK text has no spaces between sentences, so 。！？ end one directly.
_SENTENCE_END = re.compile(
    rf"(?<=\S)(?P<term>[.!?…]+)[{_CLOSERS}]*(?=\s|$)|(?P<cjk>[。！？]+)[{_CJK_CLOSERS}]*"
)
# First character of the next word, skipping opening quotes and brackets.
_NEXT_CHAR = re.compile(r"\s*[\"'“‘«(\[¿¡]*(.)", re.DOTALL)
_OPENERS = "\"'“‘«([¿¡"

# Lower-cased, without the final period. "etc" is deliberately absent: it often ends a
# sentence, and "etc. and so on" is already kept whole by the lowercase-next-word rule.
_ABBREVIATIONS = frozenset(
    {
        *("mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "mt"),
        *("capt", "gen", "col", "lt", "rev", "sgt", "hon", "messrs", "mme", "mlle"),
        *("fig", "vol", "pp", "approx", "cf"),
    }
)
# Also names or words ("Jan.", "No."), so only abbreviations when a number follows: "No. 5".
_NUMBER_ABBREVIATIONS = frozenset(
    {
        *("no", "nos", "jan", "feb", "mar", "apr", "jun"),
        *("jul", "aug", "sep", "sept", "oct", "nov", "dec"),
    }
)
_DOTTED_LETTERS = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # e.g, i.e, U.S, J.R.R


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs of normalised text (blank-line separated), without empty ones."""
    return [text[start:end] for start, end in _paragraph_spans(text)]


def _paragraph_spans(text: str) -> list[Span]:
    """Where `split_paragraphs`'s paragraphs are in `text`, each stripped."""
    bounds = [0, *(i for m in _PARAGRAPH_BREAK.finditer(text) for i in m.span()), len(text)]
    spans = []
    for start, end in zip(bounds[::2], bounds[1::2], strict=True):
        piece = text[start:end]
        start += len(piece) - len(piece.lstrip())
        end -= len(piece) - len(piece.rstrip())
        if start < end:
            spans.append((start, end))
    return spans


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one normalised paragraph, in order, each stripped and non-empty."""
    paragraph = paragraph.strip()
    return [paragraph[start:end] for start, end in _sentence_spans(paragraph)]


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _previous_word(text: str, end: int) -> str:
    start = max(text.rfind(" ", 0, end), text.rfind("\n", 0, end)) + 1
    return text[start:end].lstrip(_OPENERS)


def _is_abbreviation(word: str, next_char: str) -> bool:
    """Whether "word." is an abbreviation or initial rather than a sentence end."""
    lowered = word.lower()
    if lowered in _ABBREVIATIONS or _DOTTED_LETTERS.fullmatch(word):
        return True
    if lowered in _NUMBER_ABBREVIATIONS:
        return next_char.isdigit()
    # "J. R. R. Tolkien". Also keeps "It was I. Then..." whole, which only costs packing room.
    return len(word) == 1 and word.isupper()


def _is_sentence_end(text: str, match: re.Match[str]) -> bool:
    if match.group("cjk"):
        return True
    found = _NEXT_CHAR.match(text, match.end())
    next_char = found.group(1) if found else ""
    # '"Stop!" she said.' and 'Wait... what?' continue the sentence.
    if next_char.islower():
        return False
    bare_period = match.group("term") == "." and match.end("term") == match.end()
    return not (bare_period and _is_abbreviation(_previous_word(text, match.start()), next_char))


def _sentence_spans(paragraph: str) -> list[Span]:
    spans: list[Span] = []
    start = 0
    for match in _SENTENCE_END.finditer(paragraph):
        end = match.end()
        if end < len(paragraph) and _is_sentence_end(paragraph, match):
            spans.append((start, end))
            start = _skip_spaces(paragraph, end)
    if start < len(paragraph):
        spans.append((start, len(paragraph)))
    return _merge_unspeakable(paragraph, spans)


def _merge_unspeakable(text: str, spans: list[Span]) -> list[Span]:
    """Fold spans without a letter or digit ("...", "!!") into a neighbour: nothing to say."""
    merged: list[Span] = []
    pending: int | None = None  # start of leading unspeakable spans, waiting for a host
    for start, end in spans:
        if pending is not None:
            start, pending = pending, None
        if _HAS_ALNUM.search(text, start, end):
            merged.append((start, end))
        elif merged:
            merged[-1] = (merged[-1][0], end)
        else:
            pending = start
    if pending is not None:
        merged.append((pending, spans[-1][1]))
    return merged


# --- chunking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One TTS request. `paragraph_end`: pause for a paragraph after it, else for a sentence.
    `sentence_end`: it ends a sentence (False only for a piece of an over-long sentence).
    `start`, `end`: where `text` is in the normalised text it was cut from."""

    text: str
    paragraph_end: bool
    sentence_end: bool = field(default=True, compare=False)
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


# Where an over-long sentence may be cut: after , ; : (when a space follows, so "1,000" stays),
# after CJK clause marks, em dashes and Gutenberg "--", and after spaced en dashes and hyphens.
# Unspaced marks must be followed by a letter or digit: cutting "end--." after the dashes
# would leave a lone "." that has nothing to say.
_CLAUSE_END = re.compile(r"[,;:](?=\s)|(?:[，、；：]|—|--)(?=\s|[^\W_])|\s[–-](?=\s)")


def chunk_text(text: str, max_chars: int, *, by_sentence: bool = False) -> list[Chunk]:
    """Normalise `text` and cut it into chunks of at most `max_chars` characters.

    Whole sentences are packed greedily within a paragraph (`by_sentence`: one sentence per
    chunk, so a pause can go between any two); only a sentence longer than `max_chars` is
    cut, at clause marks, then at spaces, then anywhere. Paragraphs without a letter or digit
    (scene breaks such as "* * *") are dropped.
    """
    if max_chars < MIN_MAX_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_MAX_CHARS}, got {max_chars}")
    chunks: list[Chunk] = []
    tidy = normalize(text)
    for start, end in _paragraph_spans(tidy):
        paragraph = tidy[start:end]
        # A dropped scene break needs no flag: every paragraph's last chunk already has
        # paragraph_end=True, so the chunk before the break gets the paragraph pause.
        if _HAS_ALNUM.search(paragraph):
            chunks.extend(_chunk_paragraph(paragraph, max_chars, by_sentence, start))
    return chunks


def _chunk_paragraph(paragraph: str, max_chars: int, by_sentence: bool, offset: int) -> list[Chunk]:
    units: list[Span] = []
    sentence_ends: set[int] = set()
    for start, end in _sentence_spans(paragraph):
        sentence_ends.add(end)
        if end - start <= max_chars:
            units.append((start, end))
        else:
            units.extend(_split_long_sentence(paragraph, start, end, max_chars))
    packed = units if by_sentence else _pack(units, max_chars)
    spans = _absorb_unspeakable(paragraph, packed, max_chars)
    last = len(spans) - 1
    return [
        Chunk(paragraph[s:e], i == last, e in sentence_ends, offset + s, offset + e)
        for i, (s, e) in enumerate(spans)
    ]


def _pack(units: list[Span], max_chars: int) -> list[Span]:
    """Greedily merge consecutive units (each <= max_chars) while the result still fits."""
    packed: list[Span] = []
    for start, end in units:
        if packed and end - packed[-1][0] <= max_chars:
            packed[-1] = (packed[-1][0], end)
        else:
            packed.append((start, end))
    return packed


def _split_long_sentence(text: str, start: int, end: int, max_chars: int) -> list[Span]:
    """Cut text[start:end] into pieces <= max_chars, preferring the latest clause mark."""
    clause_ends = [m.end() for m in _CLAUSE_END.finditer(text, start, end) if start < m.end() < end]
    pieces: list[Span] = []
    while end - start > max_chars:
        cut = _cut_position(text, clause_ends, start, start + max_chars)
        pieces.append((start, cut))
        start = _skip_spaces(text, cut)
    if start < end:
        pieces.append((start, end))
    return pieces


def _cut_position(text: str, clause_ends: list[int], start: int, limit: int) -> int:
    """End of the next piece starting at `start`: clause mark, else space, else `limit`.

    Each candidate is the latest of its kind, so if its piece has no letter or digit (a lone
    "-"), no earlier one of that kind has either, and the next kind is tried.
    """
    index = bisect_right(clause_ends, limit) - 1
    clause = clause_ends[index] if index >= 0 else -1
    space = text.rfind(" ", start + 1, limit + 1)  # the piece is text[start:space]
    for cut in (clause, space):
        if cut > start and _HAS_ALNUM.search(text, start, cut):
            return cut
    return limit


def _absorb_unspeakable(text: str, spans: list[Span], max_chars: int) -> list[Span]:
    """Attach letterless pieces (a cut-off "!!!") to a neighbour that has room, else drop them.

    Only pieces of over-long sentences can lack letters: sentences never do.
    """
    kept: list[Span] = []
    carried: int | None = None  # start of a letterless piece offered to the next span
    for start, end in spans:
        if carried is not None and end - carried <= max_chars:
            start = carried
        carried = None
        if _HAS_ALNUM.search(text, start, end):
            kept.append((start, end))
        elif kept and end - kept[-1][0] <= max_chars:
            kept[-1] = (kept[-1][0], end)
        else:
            carried = start
    return kept


# --- what a text holds ------------------------------------------------------------------------

# Letters and marks that render as nothing: Hangul fillers, the braille blank, the combining
# grapheme joiner and the variation selectors (Unicode's default-ignorable code points that are
# not format characters).
_BLANK_CHARS = frozenset(
    "\u115f\u1160\u3164\uffa0\u2800\u034f\u180b\u180c\u180d\u180f"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs"})


def _visible(ch: str) -> bool:
    return not (
        ch.isspace() or ch in _BLANK_CHARS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES
    )


def has_visible_text(text: str) -> bool:
    """Whether `text` has anything but whitespace, separators, format characters (zero-width
    spaces and joiners, bidi marks, BOMs), controls and blank fillers."""
    return any(_visible(ch) for ch in set(text))


def is_speakable(text: str) -> bool:
    """Whether `chunk_text` would give `text` at least one chunk: a visible letter or digit."""
    return any(ch.isalnum() and ch not in _BLANK_CHARS for ch in set(normalize(text)))


_WORD = re.compile(r"[^\W_]+")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]*")


def starts_with_title(text: str, title: str) -> bool:
    """Whether `text` opens with `title` as a heading of its own: the title's words, in order,
    case folded, ending where the text's first line, sentence or clause ends ("CHAPTER I." or
    "The Lamp" on its own line); "The Storm raged" does not start with the title "The Storm"."""
    words = _WORD.findall(normalize(title).casefold())
    if not words:
        return False
    # Single newlines matter here (a heading on its own line), so no full normalize().
    body = unicodedata.normalize("NFC", _clean_chars(text.replace("\r\n", "\n"))).casefold()
    pattern = r"[\W_]*" + r"[\W_]+".join(map(re.escape, words)) + r"(?![^\W_])"
    found = re.match(pattern, body)
    if found is None:
        return False
    after = _HORIZONTAL_SPACE.match(body, found.end())
    rest = body[after.end() if after else found.end() :]
    return not rest or not _WORD.match(rest[0])


def estimate_seconds(chars: int, chars_per_second: float) -> float:
    """Rough speaking time for `chars` characters at a voice's measured rate."""
    if chars < 0:
        raise ValueError(f"chars must be >= 0, got {chars}")
    if not chars_per_second > 0:  # also rejects NaN
        raise ValueError(f"chars_per_second must be > 0, got {chars_per_second}")
    return chars / chars_per_second
