"""Subtitles (SRT and WebVTT) at sentence level, from the chunk timings the ledger holds.

A chapter's audio is its lead-in, then every chunk followed by its pause (assemble.py streams
the master in that order), so where each chunk starts and ends is known exactly. Inside a chunk
an engine gives no times today: the chunk's sentences share its duration by their character
counts, an estimate inside a chunk and exact at its bounds. An engine that reports sentence
times in its render info is used instead (`engine_times`, the hook). A cue holds at most
`MAX_LINES` lines of about `MAX_LINE` characters; a longer sentence becomes several cues, which
share its time by characters again. The whole book's file is the chapters' cues, each chapter
moved to where its mark in the .m4b starts.

Pure: text and numbers in, text out. Publishing the files is assemble.py's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from songbatch import text as textlib

MAX_LINE = 42  # characters per line, the common broadcast and streaming guideline
MAX_LINES = 2
# Render info key an engine may set to time its chunk's sentences: a list of
# [start_ms, end_ms, text] from the chunk's own start. No engine sets it yet.
SENTENCE_TIMES = "sentence_times"


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str  # at most MAX_LINES lines, joined by "\n"


@dataclass(frozen=True)
class TimedChunk:
    """One job's audio in its chapter: its text, where it starts, how long it lasts, and what
    the engine reported about the render (the ledger's `info`)."""

    text: str
    start_ms: int
    duration_ms: int
    info: dict[str, Any] | None = None


def place_chunks(
    lead_in_ms: int, chunks: Sequence[tuple[str, int, int, dict[str, Any] | None]]
) -> tuple[list[TimedChunk], int]:
    """(text, duration, pause after, info) of each chunk in order -> the timed chunks and the
    chapter's length: the lead-in, then each chunk and its pause, as the master is made."""
    placed: list[TimedChunk] = []
    at = lead_in_ms
    for text, duration_ms, pause_ms, info in chunks:
        placed.append(TimedChunk(text, at, duration_ms, info))
        at += duration_ms + pause_ms
    return placed, at


def chapter_cues(chunks: Sequence[TimedChunk]) -> list[Cue]:
    return [cue for chunk in chunks for cue in chunk_cues(chunk)]


def chunk_cues(chunk: TimedChunk) -> list[Cue]:
    sentences = engine_times(chunk)
    if sentences is None:
        texts = textlib.split_sentences(chunk.text) or [chunk.text.strip()]
        sentences = _share(chunk.start_ms, chunk.start_ms + chunk.duration_ms, texts)
    return [cue for start, end, text in sentences for cue in _wrapped(start, end, text)]


def engine_times(chunk: TimedChunk) -> list[tuple[int, int, str]] | None:
    """The chunk's sentences as the engine timed them, if it did: its render info's
    `SENTENCE_TIMES`, moved to the chunk's place and held inside it. None (spread by
    characters) when absent or unusable. An engine that reports word times would group them
    into sentences here. None of today's engines (espeak-ng, Chatterbox, MusicGen, the remote
    models) reports either."""
    times = (chunk.info or {}).get(SENTENCE_TIMES)
    if not isinstance(times, list) or not times:
        return None
    end = chunk.start_ms + chunk.duration_ms
    found: list[tuple[int, int, str]] = []
    at = chunk.start_ms
    try:
        for first, last, text in times:
            start = min(max(at, chunk.start_ms + int(first)), end)
            stop = min(max(start, chunk.start_ms + int(last)), end)
            if not isinstance(text, str) or not text.strip():
                return None
            found.append((start, stop, text.strip()))
            at = stop
    except (TypeError, ValueError):
        return None
    return found


def _share(start_ms: int, end_ms: int, texts: Sequence[str]) -> list[tuple[int, int, str]]:
    """`texts` back to back over start..end, each lasting its share of the characters."""
    weights = [max(1, len(text)) for text in texts]
    total = sum(weights)
    span = end_ms - start_ms
    shared: list[tuple[int, int, str]] = []
    done = 0
    for text, weight in zip(texts, weights, strict=True):
        first = start_ms + round(span * done / total)
        done += weight
        shared.append((first, start_ms + round(span * done / total), text))
    return shared


def lines(text: str) -> list[str] | None:
    """`text` on one line of at most MAX_LINE characters, or two (MAX_LINES) broken where they
    come out most even; None if it does not fit."""
    words = text.split()
    if len(" ".join(words)) <= MAX_LINE:
        return [" ".join(words)] if words else []
    best: list[str] | None = None
    for cut in range(1, len(words)):
        first, second = " ".join(words[:cut]), " ".join(words[cut:])
        longest = max(len(first), len(second))
        if longest <= MAX_LINE and (best is None or longest < max(map(len, best))):
            best = [first, second]
    return best


def split_cue_text(text: str) -> list[str]:
    """One sentence as the fewest cue texts that fit `lines`, of as even lengths as the word
    breaks allow (a word longer than a line is cut)."""
    words = [word[i : i + MAX_LINE] for word in text.split() for i in range(0, len(word), MAX_LINE)]
    if not words:
        return []
    ends = list(itertools.accumulate(len(word) + 1 for word in words))  # after each word's space
    total = ends[-1]
    count = max(1, -(-total // (MAX_LINE * MAX_LINES + 1)))
    while True:
        cuts = [0]
        for k in range(1, count):
            target = total * k / count
            room = range(cuts[-1] + 1, len(words) - (count - k) + 1)  # a word for each after
            index = min(room, key=lambda i: abs(ends[i - 1] - target))
            cuts.append(index)
        cuts.append(len(words))
        groups = [" ".join(words[a:b]) for a, b in itertools.pairwise(cuts)]
        shaped = [lines(group) for group in groups]
        if all(shape is not None for shape in shaped):
            return ["\n".join(shape) for shape in shaped if shape is not None]
        count += 1


def _wrapped(start_ms: int, end_ms: int, text: str) -> list[Cue]:
    """One sentence as cues of at most MAX_LINES lines each, sharing its time by characters."""
    groups = split_cue_text(text)
    return [Cue(first, last, cue) for first, last, cue in _share(start_ms, end_ms, groups)]


def book_cues(chapters: Sequence[tuple[int, Sequence[Cue]]]) -> list[Cue]:
    """(start of the chapter's mark, its cues) of every chapter -> one list for the book."""
    return [
        Cue(offset + cue.start_ms, offset + cue.end_ms, cue.text)
        for offset, cues in chapters
        for cue in cues
    ]


def clamp(cues: Sequence[Cue], length_ms: int) -> list[Cue]:
    """Cues held inside the audio's length (a rounding millisecond past its end)."""
    return [Cue(min(cue.start_ms, length_ms), min(cue.end_ms, length_ms), cue.text) for cue in cues]


# ---------------------------------------------------------------------- formats


def _stamp(ms: int, separator: str) -> str:
    hours, rest = divmod(max(0, ms), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    return "".join(
        f"{i}\n{_stamp(cue.start_ms, ',')} --> {_stamp(cue.end_ms, ',')}\n{cue.text}\n\n"
        for i, cue in enumerate(cues, 1)
    )


def _vtt_text(text: str) -> str:
    # WebVTT cue text is markup: & and < start escapes and tags, and "-->" may not appear.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Sequence[Cue]) -> str:
    body = "".join(
        f"{_stamp(cue.start_ms, '.')} --> {_stamp(cue.end_ms, '.')}\n{_vtt_text(cue.text)}\n\n"
        for cue in cues
    )
    return f"WEBVTT\n\n{body}"


def _lrc_stamp(ms: int) -> str:
    """`mm:ss.xx` (hundredths), minutes past 59 as they are: LRC has no hours."""
    hundredths = round(max(0, ms) / 10)
    minutes, rest = divmod(hundredths, 6000)
    seconds, part = divmod(rest, 100)
    return f"{minutes:02d}:{seconds:02d}.{part:02d}"


def to_lrc(cues: Sequence[Cue]) -> str:
    """Simple LRC: a `[mm:ss.xx]` line per cue at its start, its text on one line."""
    return "".join(f"[{_lrc_stamp(cue.start_ms)}]{' '.join(cue.text.split())}\n" for cue in cues)


def render(fmt: str, cues: Sequence[Cue]) -> str:
    if fmt == "srt":
        return to_srt(cues)
    if fmt == "vtt":
        return to_vtt(cues)
    if fmt == "lrc":
        return to_lrc(cues)
    raise ValueError(f"unknown subtitle format {fmt!r}")


def digest_fields(fmt: str, cues: Sequence[Cue]) -> dict[str, Any]:
    """What a subtitle file is made of, for its outputs record: the format and the cue list."""
    return {"subtitles": fmt, "cues": [[cue.start_ms, cue.end_ms, cue.text] for cue in cues]}
