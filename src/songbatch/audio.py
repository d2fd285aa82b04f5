"""Audio files: durable chunk writes, streaming assembly into masters, encoding through ffmpeg.

Nothing here holds more than one block (or one short chunk) of audio in memory, so memory does
not grow with book length. Every writer fsyncs what it wrote; callers publish with
`fsutil.replace_durably` (os.replace, then fsync the folder) so no reader sees a torn file.
"""

from __future__ import annotations

import dataclasses
import io
import math
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf
from mutagen import MutagenError

from songbatch.engines.base import RenderResult
from songbatch.errors import EngineError, Interrupted
from songbatch.fades import apply_fades, fade_frames
from songbatch.ffmpeg import require_encoder, run_ffmpeg
from songbatch.fsutil import (
    fsync_file,
    replace_durably,
    temp_sibling,
    write_synced,
)
from songbatch.presets import BitrateMode
from songbatch.tagging import Tags, flac_header, set_vorbis_comments, write_tags

CHUNK_SUBTYPE = "PCM_24"
KEY_TAG = "SONGBATCH_KEY"
# Every sample of a chunk squared and summed (repr of a float): a chapter's RMS, the level the
# ACX preset masters from, is then known from its chunks' tags without reading their audio.
POWER_TAG = "SONGBATCH_POWER"
BLOCK_FRAMES = 65536

# `mp3-book` is the whole book in one MP3 (chapters as ID3 CTOC/CHAP frames): an MP3 to ffmpeg
# and to the tags, a format of its own to the plan and the presets' encodings.
Format = Literal["m4b", "mp3-book", "mp3", "flac", "opus", "wav"]
FORMATS: tuple[Format, ...] = ("m4b", "mp3", "flac", "opus", "wav")
_SAME_FILE_TYPE = {"mp3-book": "mp3"}


# --- Chunks ----------------------------------------------------------------------------------


def write_chunk(path: Path, result: RenderResult, *, key: str) -> str:
    """Write a rendered chunk as FLAC PCM_24 tagged SONGBATCH_KEY=key; fsync; return its sha256.

    `path` is the caller's temporary name: this writes it in place and never renames.
    """
    return write_synced(path, encode_chunk(result, key=key))


def encode_chunk(result: RenderResult, *, key: str) -> bytes:
    """A rendered chunk's file, in memory: where the engine runs on another machine (a Ray
    actor), these bytes are what comes back, and the coordinator writes them (`write_synced`),
    so a chunk's file is the same bytes whichever backend rendered it."""
    audio = np.asarray(result.audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or audio.shape[0] == 0:
        raise EngineError(f"job {key}: engine returned no audio (shape {audio.shape})")
    if not np.isfinite(audio).all():
        raise EngineError(f"job {key}: engine returned non-finite samples", retryable=False)
    # libsndfile does not clip on float -> int conversion; out-of-range samples would wrap.
    audio = np.clip(audio, -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, audio, result.sample_rate, subtype=CHUNK_SUBTYPE, format="FLAC")
    set_vorbis_comments(buffer, {KEY_TAG: key, POWER_TAG: repr(power_of(audio))})
    return buffer.getvalue()


def power_of(samples: npt.NDArray[np.float32]) -> float:
    """Every sample of every channel squared and summed, in double (as astats sums)."""
    flat = samples.astype(np.float64).ravel()
    return float(flat @ flat)


def power_db(power: float, samples: int) -> float:
    """The RMS in dBFS of `samples` samples whose squares sum to `power` (-inf for silence):
    what astats calls the overall RMS level."""
    return 10 * math.log10(power / samples) if power > 0 else -math.inf


def audio_duration_ms(path: Path) -> int:
    """Duration of any file soundfile can read; other formats (m4b) through mutagen."""
    try:
        info = sf.info(path)
    except sf.LibsndfileError:
        import mutagen

        audio = mutagen.File(path)
        if audio is None:
            raise
        return round(float(audio.info.length) * 1000)
    return round(int(info.frames) * 1000 / int(info.samplerate))


# --- Assembly --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One piece of a master: a chunk file, or (path None) a stretch of silence."""

    path: Path | None = None
    silence_s: float = 0.0


@dataclass(frozen=True)
class MasterAudio:
    """A master's samples as the assembly lays them out, before any file holds them: read
    block by block, as many times as a caller needs (written to a FLAC master once; measured,
    then fed to mastering, under a preset). `frames`: what the blocks must come to, where it
    is known before they are read (a fade-out placed by a wrong count would cut the end)."""

    sample_rate: int
    channels: int
    open_blocks: Callable[[], Iterator[npt.NDArray[np.float32]]]
    frames: int | None = None
    # The samples' RMS in dBFS without reading them (`tagged_rms_db`), where it can be known.
    known_rms_db: Callable[[], float | None] | None = None

    def blocks(self) -> Iterator[npt.NDArray[np.float32]]:
        """The samples from the start, (frames, channels) float32 blocks; EngineError when
        they come to other than `frames`."""
        count = 0
        for block in self.open_blocks():
            count += block.shape[0]
            yield block
        if self.frames is not None and count != self.frames:
            raise EngineError(f"assembled {count} frames where the files say {self.frames}")


def segments_audio(
    segments: Iterable[Segment],
    *,
    sample_rate: int,
    channels: int,
    cancel: threading.Event | None = None,
    fade_in_ms: int = 0,
    fade_out_ms: int = 0,
) -> MasterAudio:
    """Segments laid end to end, as `assemble_master` writes them."""
    segments = list(segments)
    if fade_in_ms <= 0 and fade_out_ms <= 0:
        return MasterAudio(
            sample_rate,
            channels,
            lambda: stream_segments(segments, sample_rate, channels, cancel),
            known_rms_db=lambda: tagged_rms_db(segments, sample_rate, channels),
        )
    total = sum(segment_frames(s, sample_rate) for s in segments)
    fade_in = fade_frames(fade_in_ms, sample_rate, total)
    fade_out = fade_frames(fade_out_ms, sample_rate, total)

    def faded() -> Iterator[npt.NDArray[np.float32]]:
        blocks = stream_segments(segments, sample_rate, channels, cancel)
        return apply_fades(blocks, total=total, fade_in=fade_in, fade_out=fade_out)

    return MasterAudio(sample_rate, channels, faded, frames=total)


def tagged_rms_db(segments: Sequence[Segment], sample_rate: int, channels: int) -> float | None:
    """The RMS of `segments` laid end to end (dBFS; -inf for silence), from the power each
    chunk file carries in its POWER_TAG: only headers are read. None where a chunk carries no
    power (rendered before it was recorded) or would be read changed (another rate, channels
    mixed down)."""
    power, frames = 0.0, 0
    for segment in segments:
        silence = round(segment.silence_s * sample_rate)
        if segment.path is None:
            frames += silence
            continue
        try:
            chunk = flac_header(segment.path, POWER_TAG)
        except (OSError, MutagenError):
            return None  # reading the samples finds it damaged, and says so
        if not chunk.comment or chunk.sample_rate != sample_rate:
            return None
        if chunk.channels not in (1, channels):
            return None
        power += float(chunk.comment[0]) * channels / chunk.channels  # mono repeated
        frames += chunk.frames + (silence if segment.silence_s > 0 else 0)
    return power_db(power, frames * channels)


def assemble_master(
    segments: Iterable[Segment],
    out_path: Path,
    *,
    sample_rate: int,
    channels: int,
    owner: str,
    cancel: threading.Event | None = None,
    fade_in_ms: int = 0,
    fade_out_ms: int = 0,
) -> int:
    """Stream segments into one FLAC PCM_24 master at `out_path`; return its duration in ms.

    Chunks are read block by block; a mono chunk is upmixed (stereo downmixed) to `channels`,
    and a chunk at another rate is resampled by linear interpolation (chunks are short, so
    reading one whole is fine). `fade_in_ms` and `fade_out_ms` fade the master's first and last
    stretch as the blocks pass (`fades.py`; the length is counted from the files' headers
    first). Written under a temporary name of workspace `owner`, fsynced, then renamed.
    `cancel` set stops it between segments (Interrupted).
    """
    laid = segments_audio(
        segments,
        sample_rate=sample_rate,
        channels=channels,
        cancel=cancel,
        fade_in_ms=fade_in_ms,
        fade_out_ms=fade_out_ms,
    )
    return write_master(laid, out_path, owner=owner)


def write_master(laid: MasterAudio, out_path: Path, *, owner: str) -> int:
    """Stream `laid` into a FLAC PCM_24 master at `out_path` (a temp name of workspace
    `owner`, fsynced, renamed); its duration in ms."""
    tmp = temp_sibling(out_path, owner)
    frames = 0
    try:
        with sf.SoundFile(
            tmp,
            "w",
            samplerate=laid.sample_rate,
            channels=laid.channels,
            subtype=CHUNK_SUBTYPE,
            format="FLAC",
        ) as out:
            for block in laid.blocks():
                out.write(block)
                frames += block.shape[0]
        fsync_file(tmp)
        replace_durably(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return round(frames * 1000 / laid.sample_rate)


def stream_segments(
    segments: Sequence[Segment],
    sample_rate: int,
    channels: int,
    cancel: threading.Event | None,
) -> Iterator[npt.NDArray[np.float32]]:
    for segment in segments:
        if cancel is not None and cancel.is_set():
            raise Interrupted("interrupted while assembling")
        yield from _segment_blocks(segment, sample_rate, channels)


def piped_input(sample_rate: int, channels: int) -> list[str]:
    """ffmpeg's input arguments for blocks fed on its stdin by `feed_of`."""
    return ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0"]


def feed_of(blocks: Iterable[npt.NDArray[np.float32]]) -> Iterator[memoryview]:
    """Blocks as the bytes `piped_input` reads: their own memory where it is already
    little-endian float32 in order, not a copy (a feed runs in the coordinator's
    interpreter)."""
    return (np.ascontiguousarray(block, dtype="<f4").data.cast("B") for block in blocks)


def segment_frames(segment: Segment, sample_rate: int) -> int:
    """The frames `_segment_blocks` yields for `segment`, from the chunk's header alone."""
    silence = round(segment.silence_s * sample_rate)
    if segment.path is None:
        return silence
    info = sf.info(str(segment.path))
    frames = int(info.frames)
    if info.samplerate != sample_rate and frames:
        frames = max(1, round(frames * sample_rate / info.samplerate))
    return frames + (silence if segment.silence_s > 0 else 0)


def _segment_blocks(
    segment: Segment, sample_rate: int, channels: int
) -> Iterator[npt.NDArray[np.float32]]:
    if segment.path is None:
        yield from silence_blocks(round(segment.silence_s * sample_rate), channels)
        return
    with sf.SoundFile(segment.path) as src:
        if src.samplerate == sample_rate:
            for block in src.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
                yield match_channels(block, channels)
        else:
            whole = src.read(dtype="float32", always_2d=True)
            yield match_channels(resample_linear(whole, src.samplerate, sample_rate), channels)
    if segment.silence_s > 0:
        yield from silence_blocks(round(segment.silence_s * sample_rate), channels)


def silence_blocks(frames: int, channels: int) -> Iterator[npt.NDArray[np.float32]]:
    for start in range(0, frames, BLOCK_FRAMES):
        yield np.zeros((min(BLOCK_FRAMES, frames - start), channels), dtype=np.float32)


def match_channels(block: npt.NDArray[np.float32], channels: int) -> npt.NDArray[np.float32]:
    have = block.shape[1]
    if have == channels:
        return block
    if have == 1:
        return np.repeat(block, channels, axis=1)
    if channels == 1:
        mono: npt.NDArray[np.float32] = block.mean(axis=1, keepdims=True, dtype=np.float32)
        return mono
    raise EngineError(f"cannot map {have} channels to {channels}", retryable=False)


def resample_linear(
    audio: npt.NDArray[np.float32], from_rate: int, to_rate: int
) -> npt.NDArray[np.float32]:
    """(frames, channels) audio to another rate by linear interpolation.

    Not band-limited (downsampling may alias a little); adequate for speech chunks, and it keeps
    the dependency list free of scipy.
    """
    frames = audio.shape[0]
    target = max(1, round(frames * to_rate / from_rate)) if frames else 0
    if target == 0:
        return np.zeros((0, audio.shape[1]), dtype=np.float32)
    positions = np.arange(target, dtype=np.float64) * (from_rate / to_rate)
    source = np.arange(frames, dtype=np.float64)
    columns = [np.interp(positions, source, audio[:, c]) for c in range(audio.shape[1])]
    return np.stack(columns, axis=1).astype(np.float32)


# --- Encoding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChapterMark:
    title: str
    start_ms: int
    end_ms: int


# format -> (ffmpeg muxer, encoder, encoder args, muxer args). Every output is written to a
# temporary name, so the muxer is always explicit rather than guessed from the extension.
_CODECS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    # ffmpeg's default AAC coder (twoloop) runs about 40x realtime on speech, `fast` about 200x
    # with no audible difference at audiobook bitrates: a 10-hour book encodes in minutes.
    "m4b": ("mp4", "aac", ("-aac_coder", "fast"), ("-movflags", "+faststart")),
    "mp3": ("mp3", "libmp3lame", (), ()),
    "flac": ("flac", "flac", (), ()),
    # Opus only runs at 48 kHz (and a few divisors); resample rather than let libopus refuse.
    "opus": ("opus", "libopus", ("-ar", "48000"), ()),
    # Long stereo books pass 4 GiB: RF64 then, a plain RIFF WAV otherwise.
    "wav": ("wav", "pcm_s16le", (), ("-rf64", "auto")),
}
_DEFAULT_BITRATE = {"m4b": (64, 128), "mp3": (64, 128), "opus": (48, 96)}  # kbit/s mono, stereo


def encode(
    inputs: Sequence[Path],
    out_path: Path,
    fmt: Format,
    *,
    tags: Tags,
    cover: Path | None = None,
    chapters: Sequence[ChapterMark] | None = None,
    bitrate: str | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    mode: BitrateMode | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Concatenate `inputs` (masters of one rate and channel count) into `out_path` as `fmt`,
    tag it, and fsync it. ffmpeg streams the audio; Python never holds it.

    Chapters are written for m4b (MP4 chapters, read back by `tagging.read_chapters`) and mp3
    or mp3-book (ffmpeg's ID3v2.4 CTOC, top-level and ordered, listing a CHAP frame per chapter
    with its start and end in ms and a TIT2 title; mutagen keeps them when it tags, and
    `tagging.read_chapters` reads them back); the other formats ignore them. `cover` overrides
    `tags.cover`.
    """
    if not inputs:
        raise EngineError("encode: no inputs", retryable=False)
    file_type = _SAME_FILE_TYPE.get(fmt, fmt)
    muxer, _encoder, _extra, muxer_args = _CODECS[file_type]
    codec_args = encoder_args(
        fmt,
        channels or _channels(inputs[0]),
        bitrate=bitrate,
        sample_rate=sample_rate,
        mode=mode,
    )
    with tempfile.TemporaryDirectory(prefix="songbatch-encode-") as work:
        args = ["-f", "concat", "-safe", "0", "-i", str(_concat_list(inputs, Path(work)))]
        args += chapter_args(chapters if file_type in ("m4b", "mp3") else None, Path(work))
        # Either way no tag comes from the masters (their Vorbis comments): write_tags does it.
        args += ["-map", "0:a", *codec_args, *muxer_args]
        args += ["-f", muxer, str(out_path)]
        try:
            run_ffmpeg(args, cancel=cancel)
            write_tags(out_path, file_type, dataclasses.replace(tags, cover=cover or tags.cover))
            fsync_file(out_path)
        except BaseException:
            out_path.unlink(missing_ok=True)  # never leave a half-written file behind
            raise


# LAME's VBR quality scale (-q:a 0-9, V0-V9) and the average kbit/s each gives on speech and
# music alike, near enough to pick the level for a bit rate asked for.
_LAME_VBR_KBPS = (245, 225, 190, 175, 165, 130, 115, 100, 85, 65)


def _rate_args(fmt: str, kbps: str | None, mode: BitrateMode | None) -> list[str]:
    """ffmpeg's bit-rate arguments. MP3: constant at `kbps` (libmp3lame's -b:a), or in VBR
    mode LAME's quality level nearest it. Opus: VBR around `kbps` (libopus's own default), or
    in CBR mode constant. AAC: its encoder's average."""
    if not kbps:
        return []
    if mode is BitrateMode.VBR and fmt == "mp3":
        target = int(kbps.rstrip("k"))
        level = min(range(10), key=lambda q: abs(_LAME_VBR_KBPS[q] - target))
        return ["-q:a", str(level)]
    if fmt == "opus" and mode is BitrateMode.CBR:
        return ["-b:a", kbps, "-vbr", "off"]
    return ["-b:a", kbps]


def encoder_args(
    fmt: str,
    channels: int,
    *,
    bitrate: str | None = None,
    sample_rate: int | None = None,
    mode: BitrateMode | None = None,
) -> list[str]:
    """ffmpeg's output arguments that encode audio as `fmt` does (codec, channels, rate, bit
    rate), whatever container the stream then goes into."""
    file_type = _SAME_FILE_TYPE.get(fmt, fmt)
    _muxer, encoder, extra, _muxer_args = _CODECS[file_type]
    require_encoder(encoder)
    args = ["-c:a", encoder, *extra, "-ac", str(channels)]
    if sample_rate:
        args += ["-ar", str(sample_rate)]
    return args + _rate_args(file_type, bitrate or _default_bitrate(file_type, channels), mode)


def chapter_args(chapters: Sequence[ChapterMark] | None, work: Path) -> list[str]:
    """ffmpeg's arguments that write `chapters` (none: no chapters and no global tags from the
    inputs), the FFMETADATA file written into `work` and read as input 1."""
    if not chapters:
        return ["-map_metadata", "-1", "-map_chapters", "-1"]
    # Global tags and chapters both from the FFMETADATA file: it has no global tags, and
    # `-map_metadata -1` would also drop the chapter titles.
    return ["-i", str(_ffmetadata(chapters, work)), "-map_metadata", "1", "-map_chapters", "1"]


def _channels(path: Path) -> int:
    try:
        return int(sf.info(path).channels)
    except (sf.LibsndfileError, OSError) as exc:
        raise EngineError(f"{path}: not a readable master: {exc}", retryable=False) from exc


def _default_bitrate(fmt: str, channels: int) -> str | None:
    pair = _DEFAULT_BITRATE.get(_SAME_FILE_TYPE.get(fmt, fmt))
    return None if pair is None else f"{pair[0] if channels == 1 else pair[1]}k"


def _concat_list(inputs: Sequence[Path], work: Path) -> Path:
    """An ffconcat script; paths are absolute and single-quoted (a ' becomes '\\'')."""
    lines = ["ffconcat version 1.0"]
    for path in inputs:
        quoted = str(Path(path).resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    script = work / "inputs.ffconcat"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return script


def _ffmetadata_escape(text: str) -> str:
    # FFMETADATA treats = ; # \ and newlines specially; each is escaped with a backslash.
    for char in ("\\", "=", ";", "#", "\n"):
        text = text.replace(char, "\\" + char)
    return text


def _ffmetadata(chapters: Sequence[ChapterMark], work: Path) -> Path:
    lines = [";FFMETADATA1"]
    for chapter in chapters:
        end = max(chapter.end_ms, chapter.start_ms + 1)
        lines += [
            "[CHAPTER]",
            "TIMEBASE=1/1000",
            f"START={chapter.start_ms}",
            f"END={end}",
            f"title={_ffmetadata_escape(chapter.title)}",
        ]
    script = work / "chapters.ffmeta"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return script


def chapter_marks(titles: Sequence[str], durations_ms: Sequence[int]) -> list[ChapterMark]:
    """Back-to-back chapters from master durations (the order `encode` concatenates them)."""
    marks: list[ChapterMark] = []
    start = 0
    for title, duration in zip(titles, durations_ms, strict=True):
        marks.append(ChapterMark(title=title, start_ms=start, end_ms=start + duration))
        start += duration
    return marks
