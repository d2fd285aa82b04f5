"""An .m4b written from chapters' AAC frames: the sample tables built from the frames' sizes,
the audio copied whole, with a chapter track for Apple's players and a Nero `chpl` list for
everyone else.

Why not ffmpeg's join: its copy runs every packet through its demuxer, bitstream filter and
muxer, about 0.5 s of CPU per hour of audio, and for a 10-hour book that was most of what a
render had left to do after its last job. Here the tables come from the frame sizes the
chapter streams recorded when they were encoded (streams.py), and the audio is the streams'
bytes less their 7-byte ADTS headers, copied in blocks: memory holds the tables (about 1 MB an
hour of audio, where ffmpeg's muxer held 5 MB) and one block, and the join costs what copying
the file costs.

The layout is the one ffmpeg's `ipod` muxer gives an .m4b with chapters (checked atom by atom
against the output of imageio-ffmpeg's ffmpeg 9), with the movie header first so that a
player can start before the whole file has come:
  ftyp; moov: mvhd, the audio trak (edit list dropping the encoder's priming, `chap`
  reference), the chapter trak (a disabled QuickTime text track, a sample per chapter), udta
  (meta with an empty ilst and padding that mutagen fills with the tags in place, and chpl);
  mdat: the audio, then the chapter titles.
Every time is in the audio's own sample rate, so the edit list and the marks are exact.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from songbatch.audio import ChapterMark
from songbatch.errors import EngineError

# A chunk (the unit the sample-to-chunk and offset tables address) per this many AAC frames, as
# in ffmpeg's own files (about a minute of audio): a chapter never shares a chunk with the next.
CHUNK_FRAMES = 2048
# Frames read, stripped of their headers and written at once by the copy.
COPY_FRAMES = 16384
ADTS_HEADER = 7  # protection_absent set: no CRC, as every encoder songbatch runs writes
_U32 = 0xFFFFFFFF
# Past this, an offset takes 64 bits (co64, the mdat's large size) and a duration a version 1
# box. A module value so that a test can lower it and have ffmpeg read the 64-bit forms
# without writing 4 GiB.
FITS_32 = _U32
_UNITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # ISO 639-2 "und", packed 5 bits a letter
# QuickTime's base media header and text sample description, as ffmpeg writes them for a
# chapter track (constant: no font, no style; players draw nothing, they read the samples).
_GMHD = bytes.fromhex(
    "0000004c676d686400000018676d696e000000000040800080008000000000000000002c7465787400010000"
    "0000000000000000000000000001000000000000000000000000000040000000"
)
_TEXT_ENTRY = bytes.fromhex(
    "0000003b7465787400000000000000010000000100000000000000000000000000000000000000010000000000"
    "000000000d667461620001000100"
)
_ENCD_UTF8 = struct.pack(">I4sI", 12, b"encd", 0x100)


@dataclass(frozen=True)
class AacConfig:
    """What the ADTS headers say of the stream, and what the MP4's decoder config repeats."""

    object_type: int  # MPEG-4 audio object type: 2 for AAC LC
    rate_index: int
    sample_rate: int
    channels: int

    def audio_specific_config(self) -> bytes:
        return struct.pack(
            ">H", (self.object_type << 11) | (self.rate_index << 7) | (self.channels << 3)
        )


@dataclass(frozen=True)
class AdtsSource:
    """One chapter's ADTS stream: its file and each frame's length, header included."""

    path: Path
    lengths: npt.NDArray[np.int64]

    @property
    def payload_sizes(self) -> npt.NDArray[np.int64]:
        return self.lengths - ADTS_HEADER


def write_m4b(
    sources: Sequence[AdtsSource],
    out: BinaryIO,
    *,
    config: AacConfig,
    priming: int,
    chapters: Sequence[ChapterMark],
    tag_room: int,
) -> None:
    """The .m4b of `sources` in order into `out` (a fresh file, written from its start): an
    edit list hiding the first `priming` samples, a chapter per mark, and `tag_room` bytes of
    padding where the tags will go."""
    sizes = np.concatenate([source.payload_sizes for source in sources])
    titles = [_chapter_sample(mark.title) for mark in chapters]
    audio_bytes = int(sizes.sum())
    mdat_size = 8 + audio_bytes + sum(map(len, titles))
    mdat_header = 8 if mdat_size <= FITS_32 else 16
    ftyp = _box(b"ftyp", b"M4B ", struct.pack(">I", 0), b"M4B M4A mp42isom")

    def moov_at(payload_at: int) -> bytes:
        return _moov(sources, sizes, config, priming, chapters, titles, payload_at, tag_room)

    # The tables' sizes do not depend on the offsets in them (only on whether they need 64 bits,
    # which a first guess past 4 GiB already decides): lay out once, then write for real.
    guess = len(ftyp) + len(moov_at(mdat_size)) + mdat_header
    moov = moov_at(guess)
    out.write(ftyp)
    out.write(moov)
    if mdat_header == 8:
        out.write(struct.pack(">I4s", mdat_size, b"mdat"))
    else:
        out.write(struct.pack(">I4sQ", 1, b"mdat", mdat_size + 8))
    for source in sources:
        _copy_payload(source, out)
    for title in titles:
        out.write(title)


def _moov(
    sources: Sequence[AdtsSource],
    sizes: npt.NDArray[np.int64],
    config: AacConfig,
    priming: int,
    chapters: Sequence[ChapterMark],
    titles: Sequence[bytes],
    payload_at: int,
    tag_room: int,
) -> bytes:
    rate = config.sample_rate
    media = len(sizes) * 1024
    shown = max(0, media - priming)
    counts, offsets = _chunks(sources, payload_at)
    title_at = payload_at + int(sizes.sum())
    title_offsets = [title_at + sum(map(len, titles[:n])) for n in range(len(titles))]
    large = max([*offsets, *title_offsets, 0]) > FITS_32
    traks = [
        _audio_trak(config, sizes, counts, offsets, media, shown, priming, large, bool(chapters))
    ]
    if chapters:
        traks.append(_chapter_trak(chapters, titles, title_offsets, rate, shown, large))
    next_track = len(traks) + 1
    return _box(b"moov", _mvhd(rate, shown, next_track), *traks, _udta(chapters, tag_room))


def _chunks(sources: Sequence[AdtsSource], payload_at: int) -> tuple[list[int], list[int]]:
    """Samples in each chunk and each chunk's file offset: CHUNK_FRAMES a chunk, a chapter's
    last chunk shorter."""
    counts: list[int] = []
    offsets: list[int] = []
    at = payload_at
    for source in sources:
        sizes = source.payload_sizes
        for first in range(0, len(sizes), CHUNK_FRAMES):
            part = sizes[first : first + CHUNK_FRAMES]
            counts.append(len(part))
            offsets.append(at)
            at += int(part.sum())
    return counts, offsets


def _audio_trak(
    config: AacConfig,
    sizes: npt.NDArray[np.int64],
    counts: Sequence[int],
    offsets: Sequence[int],
    media: int,
    shown: int,
    priming: int,
    large: bool,
    chaptered: bool,
) -> bytes:
    rate = config.sample_rate
    tables = [
        _stsd_mp4a(config, sizes, media),
        _full_box(b"stts", 0, 0, struct.pack(">III", 1, len(sizes), 1024)),
        _stsc(counts),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, len(sizes)), sizes.astype(">u4").tobytes()),
        _chunk_offsets(offsets, large),
        # AAC needs the frame before a seek point decoded first (ffmpeg writes the same).
        _full_box(b"sgpd", 1, 0, b"roll", struct.pack(">IIh", 2, 1, -1)),
        _full_box(b"sbgp", 0, 0, b"roll", struct.pack(">III", 1, len(sizes), 1)),
    ]
    minf = _box(
        b"minf",
        _full_box(b"smhd", 0, 0, struct.pack(">hH", 0, 0)),
        _dinf(),
        _box(b"stbl", *tables),
    )
    mdia = _box(b"mdia", _mdhd(rate, media), _hdlr(b"soun", b"SoundHandler"), minf)
    parts = [_tkhd(1, 3, shown, alternate_group=1, volume=0x100), _elst(shown, priming)]
    if chaptered:
        parts.append(_box(b"tref", _box(b"chap", struct.pack(">I", 2))))
    return _box(b"trak", *parts, mdia)


def _chapter_trak(
    chapters: Sequence[ChapterMark],
    titles: Sequence[bytes],
    offsets: Sequence[int],
    rate: int,
    shown: int,
    large: bool,
) -> bytes:
    """A text track with a sample per chapter, lasting from its mark to the next (the last to
    the book's end), in the audio's timescale; disabled, so that nothing displays it."""
    starts = [round(mark.start_ms * rate / 1000) for mark in chapters]
    durations = [b - a for a, b in zip(starts, [*starts[1:], shown], strict=True)]
    if starts[0] != 0 or min(durations) <= 0:
        raise EngineError("chapter marks must start at 0 and rise", retryable=False)
    stts = [struct.pack(">II", 1, duration) for duration in durations]
    tables = [
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), _TEXT_ENTRY),
        _full_box(b"stts", 0, 0, struct.pack(">I", len(stts)), *stts),
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, 1, 1)),
        _full_box(
            b"stsz",
            0,
            0,
            struct.pack(">II", 0, len(titles)),
            *(struct.pack(">I", len(title)) for title in titles),
        ),
        _chunk_offsets(offsets, large),
    ]
    minf = _box(b"minf", _GMHD, _dinf(), _box(b"stbl", *tables))
    mdia = _box(b"mdia", _mdhd(rate, shown), _hdlr(b"text", b"SubtitleHandler"), minf)
    return _box(b"trak", _tkhd(2, 2, shown, alternate_group=0, volume=0), _elst(shown, 0), mdia)


def _chapter_sample(title: str) -> bytes:
    text = title.encode("utf-8")[:0xFFFF]
    return struct.pack(">H", len(text)) + text + _ENCD_UTF8


def _udta(chapters: Sequence[ChapterMark], tag_room: int) -> bytes:
    """The iTunes metadata box mutagen writes the tags into (its padding taken in place, so the
    audio after it never moves), and the Nero chapter list."""
    meta = _full_box(
        b"meta",
        0,
        0,
        _hdlr(b"mdir", b"", manufacturer=b"appl"),
        _box(b"ilst"),
        _box(b"free", bytes(max(0, tag_room))),
    )
    if not chapters:
        return _box(b"udta", meta)
    entries = [struct.pack(">B", len(chapters))]
    for mark in chapters:
        title = _utf8_prefix(mark.title, 255)
        entries.append(struct.pack(">QB", mark.start_ms * 10_000, len(title)) + title)
    return _box(b"udta", meta, _full_box(b"chpl", 1, 0, struct.pack(">I", 0), *entries))


def _utf8_prefix(text: str, limit: int) -> bytes:
    encoded = text.encode("utf-8")
    return encoded[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def _stsd_mp4a(config: AacConfig, sizes: npt.NDArray[np.int64], media: int) -> bytes:
    seconds = media / config.sample_rate
    average = round(int(sizes.sum()) * 8 / seconds) if seconds else 0
    per_second = max(1, round(config.sample_rate / 1024))
    windows = np.convolve(sizes, np.ones(per_second, dtype=np.int64), mode="valid")
    peak = int(windows.max() if len(windows) else sizes.sum()) * 8
    buffer = int(sizes.max()) if len(sizes) else 0
    decoder = _descriptor(
        0x04,
        struct.pack(">BB", 0x40, 0x15),  # MPEG-4 audio; an audio stream
        buffer.to_bytes(3, "big"),
        struct.pack(">II", peak, average),
        _descriptor(0x05, config.audio_specific_config()),
    )
    es = _descriptor(0x03, struct.pack(">HB", 1, 0), decoder, _descriptor(0x06, b"\x02"))
    rate_field = config.sample_rate << 16 if config.sample_rate <= 0xFFFF else 0
    entry = _box(
        b"mp4a",
        bytes(6),
        struct.pack(">HHHI", 1, 0, 0, 0),
        struct.pack(">HHHHI", config.channels, 16, 0, 0, rate_field),
        _full_box(b"esds", 0, 0, es),
        _box(b"btrt", struct.pack(">III", buffer, peak, average)),
    )
    return _full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry)


def _descriptor(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    size = len(body)
    # The four-byte length form, as ffmpeg writes it.
    length = bytes(
        [0x80 | (size >> 21) & 0x7F, 0x80 | (size >> 14) & 0x7F, 0x80 | (size >> 7) & 0x7F]
    ) + bytes([size & 0x7F])
    return bytes([tag]) + length + body


def _stsc(counts: Sequence[int]) -> bytes:
    """Sample-to-chunk runs: an entry where a chunk's sample count differs from the last's."""
    runs = [
        struct.pack(">III", number, count, 1)
        for number, count in enumerate(counts, start=1)
        if number == 1 or count != counts[number - 2]
    ]
    return _full_box(b"stsc", 0, 0, struct.pack(">I", len(runs)), *runs)


def _chunk_offsets(offsets: Sequence[int], large: bool) -> bytes:
    table = np.asarray(offsets, dtype=np.int64).astype(">u8" if large else ">u4").tobytes()
    return _full_box(b"co64" if large else b"stco", 0, 0, struct.pack(">I", len(offsets)), table)


def _mvhd(rate: int, duration: int, next_track: int) -> bytes:
    version, times = _times(rate, duration)
    tail = struct.pack(">IH10x", 0x10000, 0x100) + _UNITY_MATRIX + bytes(24)
    return _full_box(b"mvhd", version, 0, times, tail, struct.pack(">I", next_track))


def _tkhd(track: int, flags: int, duration: int, *, alternate_group: int, volume: int) -> bytes:
    if duration > FITS_32:
        head = struct.pack(">QQII", 0, 0, track, 0) + struct.pack(">Q", duration)
    else:
        head = struct.pack(">IIIII", 0, 0, track, 0, duration)
    tail = struct.pack(">8xhhhH", 0, alternate_group, volume, 0) + _UNITY_MATRIX
    version = 1 if duration > FITS_32 else 0
    return _full_box(b"tkhd", version, flags, head, tail, struct.pack(">II", 0, 0))


def _mdhd(rate: int, duration: int) -> bytes:
    version, times = _times(rate, duration)
    return _full_box(b"mdhd", version, 0, times, struct.pack(">HH", _LANGUAGE_UND, 0))


def _times(rate: int, duration: int) -> tuple[int, bytes]:
    """Creation and modification time (0: unknown, so that the same book makes the same bytes),
    timescale and duration, in 32 bits where they fit."""
    if duration > FITS_32:
        return 1, struct.pack(">QQIQ", 0, 0, rate, duration)
    return 0, struct.pack(">IIII", 0, 0, rate, duration)


def _elst(shown: int, media_time: int) -> bytes:
    """One edit: the media from `media_time` on, for `shown` samples, at normal rate."""
    if max(shown, media_time) > FITS_32 >> 1:  # a signed media time
        return _box(
            b"edts", _full_box(b"elst", 1, 0, struct.pack(">IQqI", 1, shown, media_time, 0x10000))
        )
    return _box(
        b"edts", _full_box(b"elst", 0, 0, struct.pack(">IIiI", 1, shown, media_time, 0x10000))
    )


def _hdlr(kind: bytes, name: bytes, *, manufacturer: bytes = bytes(4)) -> bytes:
    return _full_box(b"hdlr", 0, 0, bytes(4), kind, manufacturer, bytes(8), name + b"\0")


def _dinf() -> bytes:
    url = _full_box(b"url ", 0, 1)  # the media is in this file
    return _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), url))


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    if len(body) + 8 > _U32:
        raise EngineError(f"an MP4 {kind.decode()} box over 4 GiB", retryable=False)
    return struct.pack(">I4s", len(body) + 8, kind) + body


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def _copy_payload(source: AdtsSource, out: BinaryIO) -> None:
    """The stream's frames without their ADTS headers, COPY_FRAMES at a time; each header's
    sync word checked on the way, so that sizes that do not match the file fail loudly."""
    ends = np.cumsum(source.lengths)
    starts = ends - source.lengths
    strip = np.arange(ADTS_HEADER)
    with source.path.open("rb") as stream:
        for first in range(0, len(ends), COPY_FRAMES):
            last = min(first + COPY_FRAMES, len(ends))
            base = int(starts[first])
            data = np.frombuffer(stream.read(int(ends[last - 1]) - base), dtype=np.uint8)
            heads = starts[first:last] - base
            if len(data) != int(ends[last - 1]) - base or not _synced(data, heads):
                raise EngineError(
                    f"{source.path}: frames do not match their sizes", retryable=False
                )
            keep = np.ones(len(data), dtype=bool)
            keep[(heads[:, None] + strip).ravel()] = False
            out.write(data[keep].tobytes())
        if stream.read(1):
            raise EngineError(f"{source.path}: frames do not match their sizes", retryable=False)


def _synced(data: npt.NDArray[np.uint8], heads: npt.NDArray[np.int64]) -> bool:
    return bool(np.all(data[heads] == 0xFF) and np.all(data[heads + 1] & 0xF6 == 0xF0))
