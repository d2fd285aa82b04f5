"""A chapter encoded once into a book format's raw codec stream, so that the whole book is its
chapters' streams joined without encoding again.

A chapter's stream is encoded as soon as the chapter is whole (during the render, while the
devices work on later chapters); the book is then one copy of the streams in order into the
container, with the chapter marks and tags: seconds for a 10-hour book, where encoding it from
the masters took minutes after the last job. Streams are content-keyed by the master and the
encoding, so an unchanged chapter is never encoded twice, not even by a later run.

Raw streams are used (AAC in ADTS for the .m4b, bare MP3 frames for the book .mp3) because
their frames join byte for byte: no container's edit list or length field disagrees with the
join. What joining costs is each stream's encoder priming (1024 samples for AAC, 1105 for MP3
from LAME) at the head of every chapter: a few tens of milliseconds more of the silence a
chapter starts with. Chapter marks are placed from the streams' own frame counts, at the
sample where each chapter's audio is heard, so they stay exact; the .m4b's edit list drops the
first chapter's priming, as a single encode's would.

Measured, not assumed: tests/test_streams.py decodes what the encoders and the join wrote and
finds a known signal at the sample these figures put it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile

from songbatch import mp4
from songbatch.audio import ChapterMark, chapter_args, encoder_args
from songbatch.errors import EngineError
from songbatch.ffmpeg import run_ffmpeg
from songbatch.fsutil import fsync_file, remove_quietly, replace_durably, temp_sibling
from songbatch.presets import Encoding
from songbatch.tagging import Tags, write_tags


@dataclass(frozen=True)
class StreamFormat:
    """How a book format's chapters are encoded as raw streams and joined."""

    suffix: str
    raw: str  # ffmpeg's muxer of the raw stream
    demuxer: str  # and its demuxer
    priming: int  # samples the encoder puts before the first input sample (measured: tests)
    encoder_args: tuple[str, ...]  # added to the format's own, to keep the stream bare
    container: tuple[str, ...]  # ffmpeg's muxer and its arguments for the joined book
    # Samples a player drops from the joined file's start, as its container tells it to: the
    # m4b's edit list (mp4.py writes it), the book MP3's Info frame (which ffmpeg's muxer
    # writes, saying no encoder delay beyond the decoder's 529).
    dropped: int
    # Whether a long chapter may be encoded in sections: its encoder must end a stream whose
    # priming and samples fill whole frames without padding (ffmpeg's AAC does; LAME pads a
    # frame more or less, by a rule of its own).
    sections: bool


STREAM_FORMATS: dict[str, StreamFormat] = {
    "m4b": StreamFormat(
        suffix=".aac",
        raw="adts",
        demuxer="aac",
        priming=1024,
        encoder_args=(),
        container=(),  # not ffmpeg's: songbatch writes the .m4b (mp4.py)
        dropped=1024,
        sections=True,
    ),
    "mp3-book": StreamFormat(
        suffix=".mp3",
        raw="mp3",
        demuxer="mp3",
        priming=1105,  # LAME's encoder delay (576) and its decoder's (529)
        # No Xing/Info frame or ID3 tag per chapter: the join writes one Info frame for the book.
        encoder_args=("-write_xing", "0", "-id3v2_version", "0", "-write_id3v1", "0"),
        container=("-write_xing", "1", "-id3v2_version", "4", "-f", "mp3"),
        dropped=529,
        sections=False,
    ),
}


@dataclass(frozen=True)
class ChapterStream:
    path: Path
    frames: int
    frame_samples: int
    sample_rate: int

    @property
    def samples(self) -> int:
        return self.frames * self.frame_samples


def stream_path(folder: Path, key: str, fmt: str) -> Path:
    return folder / f"{key}{STREAM_FORMATS[fmt].suffix}"


# A section is worth its own encoder from this many seconds of audio: shorter, the ffmpeg start
# and the master's seek cost more than the section saves.
MIN_SECTION_S = 120.0


def encode_stream(
    master: Path,
    out: Path,
    fmt: str,
    encoding: Encoding,
    *,
    owner: str,
    cancel: threading.Event | None = None,
    quiet_at: Sequence[int] = (),
    sections: int = 1,
    min_section_s: float | None = None,
) -> ChapterStream:
    """`master` encoded as `fmt`'s raw stream at `out` (temp, fsync, rename), its frame count
    beside it (`<out>.json`, written first: a stream on disk always has its count).

    With `sections` > 1 and `quiet_at` (master samples where at least QUIET_SAMPLES of silence
    begin, a pause between chunks), a long chapter is encoded in up to that many sections at
    once, split in its pauses, and the sections joined: what a decoder gives is the same
    timeline, sample for sample, as one encode's (`_sections` says how)."""
    info = soundfile.info(str(master))
    output = output_args(fmt, encoding, int(info.channels))
    tmp = temp_sibling(out, owner)
    try:
        rate = int(info.samplerate)
        same_rate = encoding.sample_rate in (None, rate)
        frames = int(info.frames)
        shortest = MIN_SECTION_S if min_section_s is None else min_section_s
        cuts = _sections(frames, rate, fmt, quiet_at, sections, shortest) if same_rate else []
        if not cuts or not _encode_sections(master, tmp, fmt, output, cuts, rate, cancel):
            source = ["-i", str(master), "-map", "0:a", "-map_metadata", "-1"]
            run_ffmpeg([*source, *output, str(tmp)], cancel=cancel)
        return publish_stream(tmp, out, fmt, owner)
    finally:
        remove_quietly(tmp)


def output_args(fmt: str, encoding: Encoding, channels: int) -> list[str]:
    """ffmpeg's output arguments for `fmt`'s bare raw stream of audio with `channels`, as the
    format's encoding asks (its own channel count first)."""
    chosen = STREAM_FORMATS[fmt]
    args = encoder_args(
        fmt,
        encoding.channels or channels,
        bitrate=f"{encoding.bitrate_kbps}k" if encoding.bitrate_kbps else None,
        sample_rate=encoding.sample_rate,
        mode=encoding.mode,
    )
    return [*args, *chosen.encoder_args, "-f", chosen.raw]


def publish_stream(tmp: Path, out: Path, fmt: str, owner: str) -> ChapterStream:
    """The finished raw stream at `tmp` moved to `out`, counted: its frame count and lengths
    beside it first (a stream on disk always has its count), then the stream, each synced."""
    counted, lengths = _walk(tmp, fmt)
    stream = dataclasses.replace(counted, path=out)
    _write_count(stream, tmp.stat().st_size, lengths, owner)
    fsync_file(tmp)
    replace_durably(tmp, out)
    return stream


# Silence a section cut needs: the priming the next section starts late by, up to a frame to
# align the cut, and room on both sides of it (50 ms at 22.05 kHz).
QUIET_SAMPLES = 4096


def frame_samples(fmt: str, rate: int) -> int:
    """Samples in one frame of `fmt`'s codec at `rate`."""
    if STREAM_FORMATS[fmt].demuxer == "aac":
        return 1024
    return 1152 if rate >= 32000 else 576


def _sections(
    frames: int, rate: int, fmt: str, quiet_at: Sequence[int], sections: int, min_s: float
) -> list[tuple[int, int]]:
    """(start, end) master samples of each section, or [] for one encode.

    A section's end is put where the encoder's priming plus its samples fill whole frames, so
    its stream has no padding; the next section starts one priming later, inside the same
    silence, so its priming takes the place of the samples skipped. Joined, the streams then
    decode to the master's timeline exactly (silence for the skipped silence)."""
    count = min(sections, int(frames / rate // min_s))
    if count < 2 or not quiet_at or not STREAM_FORMATS[fmt].sections:
        return []
    frame = frame_samples(fmt, rate)
    priming = STREAM_FORMATS[fmt].priming
    cuts: list[tuple[int, int]] = []
    start = 0
    for number in range(1, count):
        wanted = frames * number // count
        later = [q for q in quiet_at if q > start + priming + frame]
        if not later:
            break
        quiet = min(later, key=lambda q: abs(q - wanted))
        end = quiet + 512 + (-(priming + quiet + 512 - start)) % frame
        if end + priming + 512 > quiet + QUIET_SAMPLES or end + priming >= frames:
            continue
        cuts.append((start, end))
        start = end + priming
    return [*cuts, (start, frames)] if cuts else []


def _encode_sections(
    master: Path,
    out: Path,
    fmt: str,
    output: list[str],
    cuts: list[tuple[int, int]],
    rate: int,
    cancel: threading.Event | None,
) -> bool:
    """Each section encoded at once into its own file, then joined into `out`. False (out
    untouched) if an encoder did not come to whole frames as `_sections` counted on."""
    priming = STREAM_FORMATS[fmt].priming
    frame = frame_samples(fmt, rate)
    with tempfile.TemporaryDirectory(prefix="songbatch-sections-", dir=out.parent) as work:
        parts = [Path(work) / f"{n:03d}" for n in range(len(cuts))]

        def encode(section: tuple[tuple[int, int], Path]) -> None:
            (start, end), part = section
            # Seeking the FLAC master is sample-exact (ffmpeg decodes on from the seek point).
            source = ["-ss", f"{start / rate:.9f}", "-i", str(master), "-map", "0:a"]
            trim = ["-af", f"atrim=end_sample={end - start}", "-map_metadata", "-1"]
            run_ffmpeg([*source, *trim, *output, str(part)], cancel=cancel)

        with ThreadPoolExecutor(len(cuts)) as pool:
            list(pool.map(encode, zip(cuts, parts, strict=True)))
        for (start, end), part in zip(cuts[:-1], parts[:-1], strict=True):
            if count_frames(part, fmt).frames * frame != priming + end - start:
                return False
        with out.open("wb") as joined:
            for part in parts:
                with part.open("rb") as section:
                    shutil.copyfileobj(section, joined)
    return True


def load_stream(path: Path, fmt: str) -> ChapterStream | None:
    """The stream at `path` with its recorded frame count; None if either is missing or they
    disagree (the stream is then encoded again)."""
    try:
        recorded = json.loads(count_path(path).read_text(encoding="utf-8"))
        if path.stat().st_size != recorded["bytes"]:
            return None
        return ChapterStream(
            path=path,
            frames=int(recorded["frames"]),
            frame_samples=int(recorded["frame_samples"]),
            sample_rate=int(recorded["sample_rate"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


COUNT_SUFFIX = ".json"


def count_path(path: Path) -> Path:
    """The stream's frame count, beside it."""
    return path.with_name(path.name + COUNT_SUFFIX)


def _write_count(
    stream: ChapterStream, size: int, lengths: npt.NDArray[np.int64], owner: str
) -> None:
    target = count_path(stream.path)
    tmp = temp_sibling(target, owner)
    try:
        record = {
            "frames": stream.frames,
            "frame_samples": stream.frame_samples,
            "sample_rate": stream.sample_rate,
            "bytes": size,
            # Each frame's length, for the .m4b writer's sample tables (mp4.py): recorded here,
            # while the chapter is encoded, so the join after the last job need not read them.
            "lengths": base64.b64encode(lengths.astype("<u2").tobytes()).decode("ascii"),
        }
        tmp.write_text(json.dumps(record), encoding="utf-8")
        fsync_file(tmp)
        replace_durably(tmp, target)
    finally:
        remove_quietly(tmp)


def count_frames(path: Path, fmt: str) -> ChapterStream:
    """Frames in a raw stream, read from their headers (every frame says its own length)."""
    return _walk(path, fmt)[0]


def _walk(path: Path, fmt: str) -> tuple[ChapterStream, npt.NDArray[np.int64]]:
    """The stream's frame count and each frame's length in bytes, from the frames' headers."""
    data = path.read_bytes()
    reader = _adts_frame if STREAM_FORMATS[fmt].demuxer == "aac" else _mp3_frame
    lengths: list[int] = []
    offset, shape = 0, None
    while offset < len(data):
        length, frame_shape = reader(data, offset)
        if shape is None:
            shape = frame_shape
        elif frame_shape != shape:
            raise EngineError(f"{path}: frames change sample rate mid-stream", retryable=False)
        offset += length
        lengths.append(length)
    if shape is None:
        raise EngineError(f"{path}: the encoder wrote no audio", retryable=False)
    stream = ChapterStream(path, len(lengths), frame_samples=shape[0], sample_rate=shape[1])
    return stream, np.asarray(lengths, dtype=np.int64)


def frame_lengths(stream: ChapterStream, fmt: str) -> npt.NDArray[np.int64]:
    """Each frame's length in bytes: as recorded beside the stream when it was encoded, or, for
    a stream recorded before songbatch kept them (or a record that disagrees), read again."""
    try:
        recorded = json.loads(count_path(stream.path).read_text(encoding="utf-8"))
        raw = base64.b64decode(recorded["lengths"], validate=True)
        lengths = np.frombuffer(raw, dtype="<u2").astype(np.int64)
        if len(lengths) == stream.frames and int(lengths.sum()) == stream.path.stat().st_size:
            return lengths
    except (OSError, ValueError, KeyError, TypeError):
        pass
    counted, lengths = _walk(stream.path, fmt)
    if counted.frames != stream.frames:
        raise EngineError(f"{stream.path}: not the stream that was counted", retryable=False)
    return lengths


_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def _adts_frame(data: bytes, at: int) -> tuple[int, tuple[int, int]]:
    header = data[at : at + 7]
    if len(header) < 7 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0:
        raise EngineError(f"not an ADTS frame at byte {at}", retryable=False)
    rate_index = (header[2] >> 2) & 0x0F
    length = ((header[3] & 0x03) << 11) | (header[4] << 3) | (header[5] >> 5)
    blocks = (header[6] & 0x03) + 1
    if rate_index >= len(_ADTS_RATES) or length < 7:
        raise EngineError(f"a damaged ADTS frame at byte {at}", retryable=False)
    # The .m4b writer takes a frame to be one AAC frame behind a 7-byte header, as ffmpeg's
    # encoder writes it: a CRC or several frames in one would be copied wrong.
    if blocks != 1 or not header[1] & 0x01:
        raise EngineError(f"an ADTS frame songbatch cannot join at byte {at}", retryable=False)
    return length, (1024, _ADTS_RATES[rate_index])


def aac_config(stream: ChapterStream) -> mp4.AacConfig:
    """The stream's AAC profile, rate and channels, from its first frame's header."""
    with stream.path.open("rb") as file:
        header = file.read(7)
    _adts_frame(header, 0)
    rate_index = (header[2] >> 2) & 0x0F
    channels = ((header[2] & 0x01) << 2) | (header[3] >> 6)
    if channels == 0:  # set by a program config element in the stream, which we do not read
        raise EngineError(f"{stream.path}: AAC with no channel configuration", retryable=False)
    return mp4.AacConfig(
        object_type=(header[2] >> 6) + 1,
        rate_index=rate_index,
        sample_rate=_ADTS_RATES[rate_index],
        channels=channels,
    )


# MPEG audio layer III: kbit/s by bitrate index, for MPEG-1 and for MPEG-2 and 2.5.
_MP3_KBPS = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame(data: bytes, at: int) -> tuple[int, tuple[int, int]]:
    header = data[at : at + 4]
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        raise EngineError(f"not an MP3 frame at byte {at}", retryable=False)
    version = (header[1] >> 3) & 0x03  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    layer = (header[1] >> 1) & 0x03
    bitrate_index, rate_index = header[2] >> 4, (header[2] >> 2) & 0x03
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        raise EngineError(f"an MP3 frame songbatch cannot read at byte {at}", retryable=False)
    mpeg1 = version == 3
    kbps = _MP3_KBPS[1 if mpeg1 else 2][bitrate_index]
    rate = _MP3_RATES[version][rate_index]
    padding = (header[2] >> 1) & 0x01
    per_frame = 1152 if mpeg1 else 576
    return per_frame * kbps * 125 // rate + padding, (per_frame, rate)


def heard_at(streams: Sequence[ChapterStream], fmt: str) -> list[int]:
    """Where, in samples of the joined book as a player presents it, each chapter's first
    sample is heard: after the streams before it and its own priming, less what a player drops
    from the file's start."""
    chosen = STREAM_FORMATS[fmt]
    starts, before = [], 0
    for stream in streams:
        starts.append(before + chosen.priming - chosen.dropped)
        before += stream.samples
    return starts


def book_marks(
    titles: Sequence[str], streams: Sequence[ChapterStream], fmt: str
) -> list[ChapterMark]:
    """A chapter mark per stream, at the millisecond its chapter is heard (the first at 0: a
    file's first chapter starts where it does), each ending where the next starts."""
    if not streams:
        return []
    rate = streams[0].sample_rate
    starts = [0, *heard_at(streams, fmt)[1:]]
    end = sum(stream.samples for stream in streams) - STREAM_FORMATS[fmt].dropped
    bounds = [round(sample * 1000 / rate) for sample in [*starts, end]]
    return [
        ChapterMark(title=title, start_ms=start, end_ms=stop)
        for title, start, stop in zip(titles, bounds, bounds[1:], strict=False)
    ]


def join_streams(
    streams: Sequence[ChapterStream],
    out_path: Path,
    fmt: str,
    *,
    tags: Tags,
    chapters: Sequence[ChapterMark],
    cancel: threading.Event | None = None,
) -> None:
    """The streams in order into one `fmt` file at `out_path`, copied (not encoded), with
    `chapters` and `tags`; fsynced. Nothing half-written is left behind.

    The .m4b is written by songbatch itself (mp4.py, from the frame sizes recorded with each
    stream); the book .mp3 by ffmpeg's copy, which also writes its Info frame."""
    if not streams:
        raise EngineError("join: no chapter streams", retryable=False)
    rates = {stream.sample_rate for stream in streams}
    if len(rates) != 1:
        raise EngineError(f"join: chapter streams at rates {sorted(rates)}", retryable=False)
    try:
        if fmt == "m4b":
            _write_m4b(streams, out_path, tags, chapters)
        else:
            _ffmpeg_join(streams, out_path, fmt, chapters, cancel)
        write_tags(out_path, "m4b" if fmt == "m4b" else "mp3", tags)
        fsync_file(out_path)
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise


# Room left in the .m4b's metadata box for the tags, beyond the cover: enough for every text
# tag songbatch writes, and less than the slack mutagen keeps (10 KiB and more), so that it
# writes the tags in place instead of moving the audio after them.
TAG_ROOM = 8 * 1024


def _write_m4b(
    streams: Sequence[ChapterStream],
    out_path: Path,
    tags: Tags,
    chapters: Sequence[ChapterMark],
) -> None:
    configs = {aac_config(stream) for stream in streams}
    if len(configs) != 1:
        raise EngineError("join: chapter streams of different AAC configurations", retryable=False)
    sources = [mp4.AdtsSource(s.path, frame_lengths(s, "m4b")) for s in streams]
    room = TAG_ROOM + (Path(tags.cover).stat().st_size if tags.cover else 0)
    with out_path.open("wb") as out:
        mp4.write_m4b(
            sources,
            out,
            config=configs.pop(),
            priming=STREAM_FORMATS["m4b"].dropped,
            chapters=chapters,
            tag_room=room,
        )


def _ffmpeg_join(
    streams: Sequence[ChapterStream],
    out_path: Path,
    fmt: str,
    chapters: Sequence[ChapterMark],
    cancel: threading.Event | None,
) -> None:
    chosen = STREAM_FORMATS[fmt]
    with tempfile.TemporaryDirectory(prefix="songbatch-join-") as work:
        listing = Path(work) / "streams.txt"
        listing.write_text("".join(f"{s.path.resolve()}\n" for s in streams), encoding="utf-8")
        args = ["-f", chosen.demuxer, "-i", f"concatf:{listing}"]
        args += chapter_args(chapters, Path(work))
        args += ["-map", "0:a", "-c:a", "copy", *chosen.container, str(out_path)]
        run_ffmpeg(args, cancel=cancel)
