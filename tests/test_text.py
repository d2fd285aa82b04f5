"""Tests for songbatch.text: normalisation, sentence splitting and TTS chunking."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from songbatch.text import (
    Chunk,
    chunk_text,
    estimate_seconds,
    normalize,
    normalize_mapped,
    split_paragraphs,
    split_sentences,
)

ALICE = Path("/work/shared/corpus/alice.txt")


# --- helpers ---------------------------------------------------------------------------------


def _has_alnum(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _kept_paragraphs(text: str) -> list[str]:
    """Paragraphs chunk_text must voice: all but letterless ones such as "* * *"."""
    return [p for p in split_paragraphs(normalize(text)) if _has_alnum(p)]


def _squeeze(text: str) -> str:
    """Text without whitespace: hard cuts may split words, so compare characters, not words."""
    return "".join(text.split())


def _is_subsequence(needle: str, haystack: str) -> bool:
    remaining = iter(haystack)
    return all(ch in remaining for ch in needle)


def _group_by_paragraph(chunks: list[Chunk]) -> list[list[Chunk]]:
    groups: list[list[Chunk]] = [[]]
    for chunk in chunks:
        groups[-1].append(chunk)
        if chunk.paragraph_end:
            groups.append([])
    assert groups[-1] == [], "the last chunk must close its paragraph"
    return groups[:-1]


def _locate(parts: list[str], text: str) -> list[tuple[int, int]]:
    """Spans of consecutive `parts` inside `text`, searched left to right."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for part in parts:
        start = text.find(part, cursor)
        assert start >= 0, f"{part!r} not found in order in {text!r}"
        spans.append((start, start + len(part)))
        cursor = start + len(part)
    return spans


def _assert_boundaries_respect_sentences(paragraph: str, group: list[Chunk], limit: int) -> None:
    """A chunk may start or end inside a sentence only if that sentence exceeds the limit."""
    sentences = _locate(split_sentences(paragraph), paragraph)
    edges = {pos for span in sentences for pos in span}
    for start, end in _locate([c.text for c in group], paragraph):
        for pos in (start, end):
            if pos in edges:
                continue
            host = next(s for s in sentences if s[0] < pos < s[1])
            assert host[1] - host[0] > limit, f"cut at {pos} inside a short sentence"


def _assert_chunk_invariants(text: str, chunks: list[Chunk], limit: int, *, exact: bool) -> None:
    for chunk in chunks:
        assert 1 <= len(chunk.text) <= limit
        assert chunk.text == chunk.text.strip()
        assert _has_alnum(chunk.text)
    paragraphs = _kept_paragraphs(text)
    groups = _group_by_paragraph(chunks)
    assert len(groups) == len(paragraphs)
    for paragraph, group in zip(paragraphs, groups, strict=True):
        _assert_boundaries_respect_sentences(paragraph, group, limit)
    said = _squeeze("".join(c.text for c in chunks))
    written = _squeeze("".join(paragraphs))
    if exact:
        assert said == written
    else:
        # Only letterless fragments of over-long sentences may be dropped.
        assert _is_subsequence(said, written)
        assert [c for c in said if c.isalnum()] == [c for c in written if c.isalnum()]
    assert chunk_text(text, limit) == chunks, "chunk_text must be deterministic"


# --- normalize -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("one\r\ntwo\r\n\r\nthree", "one two\n\nthree"),
        ("one\rtwo\r\rthree", "one two\n\nthree"),
        ("a\u00a0b\u202fc\u3000d\u2003e", "a b c d e"),
        ("zero\u200bwidth\u200d joiner\ufeff", "zerowidth joiner"),
        ("bidi \u202ba\u202c \u200emark\u2066", "bidi a mark"),
        ("tab\there  and   spaces", "tab here and spaces"),
        ("bell\x07 and\x00 null", "bell and null"),
        ("trailing   \nspaces   \n\n\n\nnext", "trailing spaces\n\nnext"),
        ("  \n\n  lead and trail  \n\n  ", "lead and trail"),
        ("blank line with spaces\n   \t \nnext", "blank line with spaces\n\nnext"),
        ("line\u2028sep\u2029para", "line sep\n\npara"),
        ("cafe\u0301", "caf\u00e9"),
        ("e\u200b\u0301", "\u00e9"),  # composed only once the zero-width space is gone
        ("", ""),
        (" \n\t\u00a0\u200b ", ""),
    ],
)
def test_normalize_cases(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_joins_gutenberg_hard_wraps() -> None:
    raw = (
        "Alice was beginning to get very tired of sitting by her sister on the\r\n"
        "bank, and of having nothing to do.\r\n"
        "\r\n"
        "  So she was considering in her own mind\r\n"
        "  (as well as she could).\r\n"
    )
    assert normalize(raw) == (
        "Alice was beginning to get very tired of sitting by her sister on the bank, "
        "and of having nothing to do.\n\n"
        "So she was considering in her own mind (as well as she could)."
    )


@given(st.text())
def test_normalize_is_idempotent(raw: str) -> None:
    once = normalize(raw)
    assert normalize(once) == once


@given(st.text())
def test_normalize_output_shape(raw: str) -> None:
    text = normalize(raw)
    assert text == text.strip()
    assert "  " not in text
    assert "\n\n\n" not in text
    assert all(ch in " \n" or not ch.isspace() for ch in text)
    assert all(p and "\n" not in p for p in text.split("\n\n")) or text == ""


# --- paragraphs and sentences ----------------------------------------------------------------


def test_split_paragraphs() -> None:
    assert split_paragraphs("one\n\ntwo two\n\nthree") == ["one", "two two", "three"]
    assert split_paragraphs("") == []


@pytest.mark.parametrize(
    ("paragraph", "expected"),
    [
        ("One. Two! Three? Four…", ["One.", "Two!", "Three?", "Four…"]),
        ("Really?! Yes.", ["Really?!", "Yes."]),
        (
            "Mr. Smith and Mrs. Jones met Dr. Brown on St. Mary's Rd. today.",
            ["Mr. Smith and Mrs. Jones met Dr. Brown on St. Mary's Rd. today."],
        ),
        (
            "Prof. X vs. Capt. Y, e.g. here, i.e. now.",
            ["Prof. X vs. Capt. Y, e.g. here, i.e. now."],
        ),
        (
            "J. R. R. Tolkien wrote it. J.R.R. Martin did not.",
            ["J. R. R. Tolkien wrote it.", "J.R.R. Martin did not."],
        ),
        (
            "See No. 5 on Jan. 3. I met Jan. He waved.",
            ["See No. 5 on Jan. 3.", "I met Jan.", "He waved."],
        ),
        (
            "Pi is 3.14 and a lot is 1.000 units. Next.",
            ["Pi is 3.14 and a lot is 1.000 units.", "Next."],
        ),
        ("It was 1999. Then 2000 came.", ["It was 1999.", "Then 2000 came."]),
        ("Visit example.com today. Ok.", ["Visit example.com today.", "Ok."]),
    ],
)
def test_sentence_abbreviations_numbers(paragraph: str, expected: list[str]) -> None:
    assert split_sentences(paragraph) == expected


@pytest.mark.parametrize(
    ("paragraph", "expected"),
    [
        # Lowercase after the closing quote: the speech tag continues the sentence.
        ('"Stop!" she said. He stopped.', ['"Stop!" she said.', "He stopped."]),
        ("'Oh dear!' (when she thought) Alice ran.", ["'Oh dear!' (when she thought) Alice ran."]),
        ('He said "Go." Then he went.', ['He said "Go."', "Then he went."]),
        ("“Done.” She left.", ["“Done.”", "She left."]),
        ("(It ended.) Next.", ["(It ended.)", "Next."]),
        ("«Fin.» Puis rien.", ["«Fin.»", "Puis rien."]),
    ],
)
def test_sentence_quotes(paragraph: str, expected: list[str]) -> None:
    assert split_sentences(paragraph) == expected


@pytest.mark.parametrize(
    ("paragraph", "expected"),
    [
        ("Wait… what was that?", ["Wait… what was that?"]),
        ("Wait... what was that?", ["Wait... what was that?"]),
        ("Wait… What was that?", ["Wait…", "What was that?"]),
        ("Well . . . maybe. Yes.", ["Well . . . maybe.", "Yes."]),
        ("Oh!!! ... Fine.", ["Oh!!! ...", "Fine."]),
    ],
)
def test_sentence_ellipsis(paragraph: str, expected: list[str]) -> None:
    assert split_sentences(paragraph) == expected


def test_sentence_cjk() -> None:
    assert split_sentences("你好。我很好！你呢？") == ["你好。", "我很好！", "你呢？"]
    assert split_sentences("「走吧。」他说。好！") == ["「走吧。」", "他说。", "好！"]
    assert split_sentences("こんにちは。 Hello there.") == ["こんにちは。", "Hello there."]


def test_sentences_reassemble_paragraph() -> None:
    paragraph = 'He said "Hi!" Dr. Who? Yes... no. 3.5 km. Fine'
    sentences = split_sentences(paragraph)
    assert " ".join(sentences) == paragraph
    assert all(s == s.strip() and s for s in sentences)


# --- chunking --------------------------------------------------------------------------------


def test_chunk_packs_whole_sentences() -> None:
    text = "One two three. Four five six. Seven eight nine."
    assert chunk_text(text, 30) == [
        Chunk("One two three. Four five six.", paragraph_end=False),
        Chunk("Seven eight nine.", paragraph_end=True),
    ]


def test_chunk_never_joins_paragraphs() -> None:
    chunks = chunk_text("Short one.\n\nShort two.\r\n\r\nShort three.", 300)
    assert chunks == [
        Chunk("Short one.", paragraph_end=True),
        Chunk("Short two.", paragraph_end=True),
        Chunk("Short three.", paragraph_end=True),
    ]


def test_chunk_rejects_small_limit() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        chunk_text("text", 19)
    assert chunk_text("text", 20) == [Chunk("text", paragraph_end=True)]


def test_chunk_empty_input() -> None:
    assert chunk_text("", 100) == []
    assert chunk_text(" \n\n * * * \n\n", 100) == []


def test_long_sentence_splits_at_clauses() -> None:
    sentence = (
        "The rain had not stopped for days, the river rose over its banks; "
        "the bridge was gone: nobody could cross — not even the mailman - and so "
        "the village waited."
    )
    chunks = chunk_text(sentence, 70)
    assert [c.text for c in chunks] == [
        "The rain had not stopped for days, the river rose over its banks;",
        "the bridge was gone: nobody could cross — not even the mailman -",
        "and so the village waited.",
    ]
    assert [c.paragraph_end for c in chunks] == [False, False, True]


def test_long_clause_splits_at_last_space() -> None:
    clause = " ".join(["word"] * 30)  # 149 characters, no clause marks
    chunks = chunk_text(clause + ".", 40)
    assert all(len(c.text) <= 40 for c in chunks)
    assert [len(c.text) for c in chunks[:-1]] == [39] * (len(chunks) - 1)
    assert " ".join(c.text for c in chunks) == clause + "."


def test_gutenberg_double_dash_is_a_clause_mark() -> None:
    text = "all would change to dull reality--the grass would be only rustling in the wind."
    assert [c.text for c in chunk_text(text, 40)] == [
        "all would change to dull reality--",
        "the grass would be only rustling in the",
        "wind.",
    ]


def test_no_whitespace_run_is_cut_hard() -> None:
    run = "x" * 95
    chunks = chunk_text(f"Start. {run} end.", 30)
    assert [c.text for c in chunks] == ["Start.", "x" * 30, "x" * 30, "x" * 30, "xxxxx end."]


def test_cjk_long_sentence_uses_cjk_commas() -> None:
    text = "我们走了很远的路，" * 4 + "终于到了。"
    chunks = chunk_text(text, 20)
    assert [c.text for c in chunks] == ["我们走了很远的路，我们走了很远的路，"] * 2 + ["终于到了。"]


def test_scene_break_paragraph_is_dropped() -> None:
    text = "The end of a scene.\n\n*    *    *\n\n* * *\n\nA new scene begins."
    assert chunk_text(text, 100) == [
        Chunk("The end of a scene.", paragraph_end=True),
        Chunk("A new scene begins.", paragraph_end=True),
    ]


def test_letterless_pieces_of_long_sentences() -> None:
    # A hard cut can leave a fragment with nothing to say; with no room next to it, it goes.
    assert chunk_text("x" * 30 + "!!!", 30) == [Chunk("x" * 30, paragraph_end=True)]
    # With room, it stays attached to its neighbour.
    assert [c.text for c in chunk_text("word " * 5 + "— — —", 20)] == [
        "word word word word",
        "word — — —",
    ]


# --- property tests --------------------------------------------------------------------------

_LETTERS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéß", min_size=1, max_size=12
)
_FIXED_WORDS = st.sampled_from(
    [
        "Mr.",
        "Dr.",
        "e.g.",
        "J.",
        "No. 5",
        "3.14",
        "1.000",
        "'quoted'",
        '"Stop!" she',
        "naïve",
        "你好，世界",
        "it's",
        "(aside)",
        "well,",
        "yes;",
        "so:",
        "x--",
        "y—",
        "2024",
    ]
)
_SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\n", "\u00a0", "\t", " \u200b", " - ", " – "])
_ENDINGS = st.sampled_from([".", "!", "?", "?!", "…", "...", '."', ".'", "!)", "。"])


@st.composite
def _sentences(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.one_of(_LETTERS, _FIXED_WORDS), min_size=1, max_size=40))
    text = words[0]
    for word in words[1:]:
        text += draw(_SEPARATORS) + word
    return text + draw(_ENDINGS)


@st.composite
def _prose(draw: st.DrawFn) -> str:
    """Book-like text whose every whitespace-separated token contains a letter or digit."""
    paragraphs = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.integers(0, 6)) == 0:
            paragraphs.append("* * *")
        else:
            paragraphs.append(" ".join(draw(st.lists(_sentences(), min_size=1, max_size=6))))
    breaks = st.sampled_from(["\n\n", "\r\n\r\n", "\n \n\n"])
    return "".join(p + draw(breaks) for p in paragraphs)


@settings(max_examples=200, deadline=None)
@given(_prose(), st.integers(20, 400))
def test_chunks_of_prose_keep_every_character(text: str, limit: int) -> None:
    _assert_chunk_invariants(text, chunk_text(text, limit), limit, exact=True)


_NOISY = st.text(
    alphabet=st.one_of(
        st.sampled_from("ab .!?…,;:—-–\"'”’)(*\r\n\n\t\u00a0\u200b。！？，"),
        st.characters(),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(_NOISY, st.integers(20, 60))
def test_chunks_of_any_text_keep_every_letter(text: str, limit: int) -> None:
    _assert_chunk_invariants(text, chunk_text(text, limit), limit, exact=False)


@settings(max_examples=200, deadline=None)
@given(_prose(), st.integers(20, 400))
def test_a_chunk_is_where_it_says_in_the_text_and_traces_back_to_it(text: str, limit: int) -> None:
    tidy, back = normalize_mapped(text)
    for chunk in chunk_text(tidy, limit):
        assert tidy[chunk.start : chunk.end] == chunk.text
        start, end = back.source_span(chunk.start, chunk.end)
        # The text it came from, less the whitespace and invisible marks normalize drops.
        assert _squeeze(normalize(text[start:end])) == _squeeze(chunk.text)


def test_normalize_mapped_traces_collapsed_spaces_and_dropped_marks() -> None:
    raw = "  One\u200b  two.\n\n\n Three\tfour. "
    tidy, back = normalize_mapped(raw)
    assert tidy == "One two.\n\nThree four."
    three = tidy.index("Three")
    assert raw[slice(*back.source_span(0, 8))] == "One\u200b  two."
    assert raw[slice(*back.source_span(three, len(tidy)))] == "Three\tfour."
    assert normalize_mapped(tidy) == (tidy, normalize_mapped(tidy)[1])
    assert normalize_mapped(tidy)[1].edits == ()


# --- the real novel --------------------------------------------------------------------------


@pytest.mark.skipif(not ALICE.exists(), reason="shared corpus not mounted")
def test_alice_chunks() -> None:
    text = ALICE.read_text(encoding="utf-8")
    chunks = chunk_text(text, 300)
    _assert_chunk_invariants(text, chunks, 300, exact=True)
    headings = [i for i, c in enumerate(chunks) if c.text.startswith("CHAPTER")]
    assert len(headings) == 12
    for i in headings:
        assert chunks[i].paragraph_end
        assert i == 0 or chunks[i - 1].paragraph_end
    assert chunks[0].text == "CHAPTER I. Down the Rabbit-Hole"


# --- estimate_seconds ------------------------------------------------------------------------


def test_estimate_seconds() -> None:
    assert estimate_seconds(300, 15.0) == pytest.approx(20.0)
    assert estimate_seconds(0, 12.5) == 0.0
    with pytest.raises(ValueError):
        estimate_seconds(10, 0.0)
    with pytest.raises(ValueError):
        estimate_seconds(10, float("nan"))
    with pytest.raises(ValueError):
        estimate_seconds(-1, 10.0)
