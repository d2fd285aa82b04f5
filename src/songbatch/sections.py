"""A chapter's book stream encoded in sections as its chunks arrive, so that after the last job
only the chapter's last section is left to encode.

For a chapter with no mastering preset each sample of its master is a chunk's sample or
silence, placed by the layout alone (`Piece`), so a stretch of it can be encoded from the chunk
files before the rest exist. Sections are cut as `streams._sections` cuts a master: in a pause,
each ending where the encoder's priming and its samples fill whole frames (no padding), the
next starting one priming later in the same silence, so the joined sections decode to the
master's timeline sample for sample. Every section therefore starts on a frame boundary of the
whole chapter, and where it starts depends on the exact length of every chunk before it: a
section is encoded only once the chapter's leading run of done chunks reaches its end.

Cuts are chosen online (`cut`): a section closes at the first pause at least MIN_SECTION_S
after its start that can hold a cut, which the chunks up to that pause decide. So the sections
encoded while the chapter renders are the ones its final assembly asks for, whatever order the
chunks arrive in, and any not encoded yet are encoded at once when the chapter is whole.

Each section is a content-keyed file in the work folder (`section_key`: its pieces' hashes and
lengths, where it starts in the first, its length and the encoding), written as a stream is
(temp file, its count first, fsync, rename): a killed run keeps every finished section for the
next one, and never leaves half of one under its name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from songbatch import audio, streams
from songbatch.errors import EngineError
from songbatch.ffmpeg import run_ffmpeg
from songbatch.fsutil import remove_quietly, temp_sibling
from songbatch.presets import Encoding

# Changes whenever the samples a key names would change (the cut rule, the feed).
SECTION_VERSION = 1

# How far into a pause a cut may start, and how far before its end the next section must start:
# room for the transform's overlap on both sides of the cut (60 ms, as for a master's cuts).
CUT_MARGIN_S = 0.06


@dataclass(frozen=True)
class Piece:
    """One segment of a chapter's layout, where the master puts it."""

    segment: audio.Segment
    ident: str  # what decides its samples: a chunk's recorded sha256, "" for silence
    start: int
    frames: int

    @property
    def end(self) -> int:
        return self.start + self.frames


def place(
    segments: Sequence[tuple[audio.Segment, str]],
    frames_of: Callable[[audio.Segment, str], int],
) -> list[Piece]:
    """The segments (each with its ident) laid end to end from sample 0, as the master is;
    `frames_of(segment, ident)` says how long each is."""
    pieces, at = [], 0
    for segment, ident in segments:
        frames = frames_of(segment, ident)
        pieces.append(Piece(segment, ident, at, frames))
        at += frames
    return pieces


@dataclass(frozen=True)
class Section:
    """Master samples [start, end) encoded as one stream; the last one of a chapter ends where
    the chapter does and may end in a padded frame, as a whole encode does."""

    start: int
    end: int
    last: bool = False


def cut(
    pieces: Sequence[Piece], fmt: str, rate: int, min_s: float, *, whole: bool
) -> list[Section]:
    """The sections of `pieces` that they decide: each closed at the first pause at least
    `min_s` after its start with room for a cut. With `whole` (the chapter's every piece), the
    rest as its last section; otherwise a section that may still grow is left out."""
    chosen = streams.STREAM_FORMATS[fmt]
    if not chosen.sections or not pieces:
        return []
    frame, priming = streams.frame_samples(fmt, rate), chosen.priming
    margin = round(CUT_MARGIN_S * rate) + 512
    sections, start = [], 0
    for piece in pieces:
        if piece.segment.path is not None or piece.start - start < min_s * rate:
            continue
        end = piece.start + margin
        end += (-(priming + end - start)) % frame
        if end + priming + margin > piece.end:
            continue  # too short a pause to cut in
        sections.append(Section(start, end))
        start = end + priming
    if whole and start < pieces[-1].end:
        sections.append(Section(start, pieces[-1].end, last=True))
    return sections


def section_key(
    pieces: Sequence[Piece],
    section: Section,
    fmt: str,
    encoding: Encoding,
    *,
    rate: int,
    channels: int,
) -> str:
    """What decides a section's stream: the pieces it covers (their hashes and lengths), where
    it starts in the first, its length, whether it ends the chapter, and the encoding."""
    inside = _inside(pieces, section)
    record = {
        "version": SECTION_VERSION,
        "format": fmt,
        "encoding": encoding.key_fields(),
        "rate": rate,
        "channels": channels,
        "pieces": [(piece.ident, piece.frames) for piece in inside],
        "from": section.start - inside[0].start if inside else 0,
        "frames": section.end - section.start,
        "last": section.last,
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _inside(pieces: Sequence[Piece], section: Section) -> list[Piece]:
    return [p for p in pieces if p.end > section.start and p.start < section.end]


class SectionMisfit(EngineError):
    """The encoder did not come to the whole frames the cut counted on: the chapter is encoded
    from its master instead."""


def encode_section(
    pieces: Sequence[Piece],
    section: Section,
    out: Path,
    fmt: str,
    encoding: Encoding,
    *,
    rate: int,
    channels: int,
    owner: str,
    cancel: threading.Event | None = None,
) -> streams.ChapterStream:
    """The section's samples, read from its chunk files and fed to the encoder, as `fmt`'s raw
    stream at `out` (temp, count, fsync, rename). SectionMisfit if a section that is not the
    last did not come out in exactly whole frames."""
    source = audio.piped_input(rate, channels)
    output = streams.output_args(fmt, encoding, channels)
    feed = audio.feed_of(section_blocks(pieces, section, rate, channels, cancel))
    tmp = temp_sibling(out, owner)
    try:
        run_ffmpeg([*source, *output, str(tmp)], cancel=cancel, feed=feed)
        counted = streams.count_frames(tmp, fmt)
        if not section.last and not fits(counted, section, fmt):
            raise SectionMisfit(f"{out.name}: {counted.frames} frames, not whole", retryable=False)
        return streams.publish_stream(tmp, out, fmt, owner)
    finally:
        remove_quietly(tmp)


def fits(stream: streams.ChapterStream, section: Section, fmt: str) -> bool:
    """Whether the stream holds exactly its priming and the section's samples."""
    priming = streams.STREAM_FORMATS[fmt].priming
    return stream.samples == priming + section.end - section.start


def section_blocks(
    pieces: Sequence[Piece],
    section: Section,
    rate: int,
    channels: int,
    cancel: threading.Event | None,
) -> Iterator[npt.NDArray[np.float32]]:
    """The master's samples [start, end) as float32 blocks, little-endian: each covered
    chunk read and converted as `audio.assemble_master` reads it, silence as zeros."""
    for piece in _inside(pieces, section):
        low = max(section.start - piece.start, 0)
        high = min(section.end, piece.end) - piece.start
        if piece.segment.path is None:
            yield from audio.silence_blocks(high - low, channels)
            continue
        at = 0
        for block in audio.stream_segments([piece.segment], rate, channels, cancel):
            first, stop = max(low - at, 0), min(high - at, block.shape[0])
            if first < stop:
                yield np.ascontiguousarray(block[first:stop], dtype="<f4")
            at += block.shape[0]


def join_sections(
    parts: Sequence[streams.ChapterStream], out: Path, fmt: str, owner: str
) -> streams.ChapterStream:
    """The sections' streams copied in order into the chapter's stream at `out`, published as
    one encode's is (its count beside it first)."""
    tmp = temp_sibling(out, owner)
    try:
        with tmp.open("wb") as joined:
            for part in parts:
                with part.path.open("rb") as section:
                    shutil.copyfileobj(section, joined)
        return streams.publish_stream(tmp, out, fmt, owner)
    finally:
        remove_quietly(tmp)


def remove_section(path: Path) -> None:
    """A section whose chapter stream is on disk: its count first, so a kill between the two
    leaves a stream without a count, which `load_stream` refuses and gc removes."""
    remove_quietly(streams.count_path(path))
    remove_quietly(path)
