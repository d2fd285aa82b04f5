"""A layered album track: a bed and a voice (or several of each) mixed into one master, each
source rendered as its own jobs.

A music layer is one music job, the bed. A spoken layer is speech jobs, one per sentence or
written line, laid out as a chapter is: silence until its `start`, then each chunk and the
pause after it. The track runs until the last voice's last word plus that layer's `tail`, or
for the track's `duration` where that is longer. Times come from the chunk files' headers, at
the master's rate, so the mix, the LRC file and the ducking agree to the frame.

- **The bed's length** is planned before any voice exists (`fitted_bed_ms`): the voices'
  estimated lengths x BED_MARGIN, rounded up to a multiple of BED_STEP_S, so editing a few
  words keeps the bed's job key and its render. At assembly it is fitted to what the voices
  came to: cut with a TRIM_FADE_S fade at the track's end, or, where the voices ran past it,
  looped with an equal-power LOOP_CROSSFADE_S crossfade.
- **Ducking** is a gain envelope from the voice chunks' places, not a compressor listening to
  the voice: the bed starts to dip DUCK_LEAD_S before the first word (a sidechain can only
  react after it, so the first syllable would be masked), stays down across the short pauses
  between sentences (DUCK_HOLD_S: no pumping), and comes back up over DUCK_RELEASE_S in
  longer gaps. The curve is a raised cosine in dB. It depends only on the layout, so the same
  chunks always give the same samples.
- **Streaming**: one block of every layer at a time (the bed read by seeking its file, each
  voice chunk as `audio.stream_segments` gives it), so memory is flat in the track's length.

The mix is the layers' sum at their `gain_db`, clipped to full scale; the track's fades go on
the sum, so every format (and ReplayGain, measured on the master) hears the mixed track.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
import soundfile as sf

from songbatch import audio
from songbatch.assemblyspec import MusicLayerSpec, SpeechLayerSpec, UnitSpec
from songbatch.engines.params import MAX_MUSIC_S
from songbatch.errors import EngineError, Interrupted
from songbatch.fades import apply_fades, fade_frames, fade_in_gain, fade_out_gain
from songbatch.subtitles import Cue

# In every mixed master's key: a change to how layers are mixed makes new masters.
MIX_VERSION = 1
# Planning the bed: the estimate of a voice's length is rough (a speaking rate per profile),
# so the bed is asked for this much more, rounded up to whole steps.
BED_MARGIN = 1.25
BED_STEP_S = 15
# Fitting the bed to the track.
TRIM_FADE_S = 1.5
LOOP_CROSSFADE_S = 2.0
# Ducking.
DUCK_LEAD_S = 0.25
DUCK_RELEASE_S = 0.8
DUCK_HOLD_S = 1.5

Block = npt.NDArray[np.float32]


def fitted_bed_ms(voice_ends_ms: Sequence[int], min_ms: int) -> int:
    """How long to render a bed: past every voice's estimated end (its start, its words and
    pauses x BED_MARGIN, its tail) and the track's `duration`, in whole BED_STEP_S."""
    longest = max([min_ms, *(round(end * BED_MARGIN) for end in voice_ends_ms)])
    step = BED_STEP_S * 1000
    return min(round(MAX_MUSIC_S * 1000), max(step, math.ceil(longest / step) * step))


# ---------------------------------------------------------------------- layout


@dataclass(frozen=True)
class PlacedChunk:
    seq: int
    path: Path
    start: int  # first frame in the track
    frames: int

    @property
    def end(self) -> int:
        return self.start + self.frames


@dataclass(frozen=True)
class VoiceLayer:
    gain: float  # linear
    chunks: list[PlacedChunk]
    lines: list[list[int]]  # the seqs of each written line's chunks
    tail: int  # frames

    @property
    def end(self) -> int:
        return self.chunks[-1].end + self.tail


@dataclass(frozen=True)
class BedLayer:
    path: Path
    frames: int
    gain: float  # linear
    duck_db: float


@dataclass(frozen=True)
class Layout:
    rate: int
    channels: int
    total: int  # frames of the track
    beds: list[BedLayer]
    voices: list[VoiceLayer]

    def voiced_spans(self) -> list[tuple[int, int]]:
        """Where any voice speaks, as (first, end) frames, merged across gaps shorter than
        DUCK_HOLD_S."""
        hold = round(DUCK_HOLD_S * self.rate)
        spans: list[tuple[int, int]] = []
        chunks = sorted((c.start, c.end) for voice in self.voices for c in voice.chunks)
        for start, end in chunks:
            if spans and start - spans[-1][1] < hold:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((start, end))
        return spans


def layout(meta: UnitSpec, chunks: Sequence[Path], pauses_ms: Sequence[int]) -> Layout:
    """Where every layer's audio goes in the track. `meta` is the planner's unit (its
    `layers`, `min_ms`); `chunks` and `pauses_ms` are the unit's job files and the pause after
    each, by seq."""
    specs = meta.layers
    first_bed = next(spec for spec in specs if isinstance(spec, MusicLayerSpec))
    rate = int(sf.info(str(chunks[first_bed.seqs[0]])).samplerate)
    channels = max(int(sf.info(str(chunks[spec.seqs[0]])).channels) for spec in specs)
    beds: list[BedLayer] = []
    voices: list[VoiceLayer] = []
    for spec in specs:
        gain = 10 ** (float(spec.gain_db) / 20)
        if isinstance(spec, MusicLayerSpec):
            beds.append(_bed(chunks[spec.seqs[0]], rate, gain, float(spec.duck_db)))
        else:
            voices.append(_voice(spec, chunks, pauses_ms, rate, gain))
    total = max([_frames(meta.min_ms, rate), *(v.end for v in voices)])
    return Layout(rate, channels, total, beds, voices)


def _frames(ms: int, rate: int) -> int:
    return round(ms * rate / 1000)


def _bed(path: Path, rate: int, gain: float, duck_db: float) -> BedLayer:
    info = sf.info(str(path))
    if int(info.samplerate) != rate:
        raise EngineError(
            f"{path}: music layers of one track at {info.samplerate} and {rate} Hz",
            retryable=False,
        )
    return BedLayer(path, int(info.frames), gain, duck_db)


def _voice(
    spec: SpeechLayerSpec, chunks: Sequence[Path], pauses_ms: Sequence[int], rate: int, gain: float
) -> VoiceLayer:
    first, stop = spec.seqs
    at = _frames(spec.start_ms, rate)
    placed = []
    for seq in range(first, stop):
        frames = audio.segment_frames(audio.Segment(path=chunks[seq]), rate)
        placed.append(PlacedChunk(seq, chunks[seq], at, frames))
        at += frames + _frames(pauses_ms[seq], rate)
    return VoiceLayer(gain, placed, line_seqs(spec), _frames(spec.tail_ms, rate))


def line_seqs(spec: SpeechLayerSpec) -> list[list[int]]:
    """A spoken layer's written lines, each as the seqs of its chunks."""
    bounds = [*spec.lines, spec.seqs[1]]
    return [list(range(a, b)) for a, b in itertools.pairwise(bounds)]


# ---------------------------------------------------------------------- lyrics


def lyric_lines(meta: UnitSpec, texts: Sequence[str]) -> list[str]:
    """Every spoken layer's lines as written (chunk texts of a line joined), in layer order:
    the track's lyrics tag."""
    return [
        " ".join(texts[seq] for seq in line)
        for spec in meta.layers
        if isinstance(spec, SpeechLayerSpec)
        for line in line_seqs(spec)
    ]


def lyric_cues(placed: Layout, texts: Sequence[str]) -> list[Cue]:
    """A cue per written line of every voice: from its first chunk's first frame to its
    last chunk's end, in the order they are heard."""
    by_seq = {c.seq: c for voice in placed.voices for c in voice.chunks}
    cues = []
    for voice in placed.voices:
        for line in voice.lines:
            start, end = by_seq[line[0]].start, by_seq[line[-1]].end
            text = " ".join(texts[seq] for seq in line)
            cues.append(Cue(_ms(start, placed.rate), _ms(end, placed.rate), text))
    return sorted(cues, key=lambda cue: (cue.start_ms, cue.end_ms))


def _ms(frames: int, rate: int) -> int:
    return round(frames * 1000 / rate)


# ---------------------------------------------------------------------- ducking


def duck_depth(
    positions: npt.NDArray[np.int64], spans: Sequence[tuple[int, int]], rate: int
) -> npt.NDArray[np.float64]:
    """0 (full level) to 1 (fully ducked) at each frame: 1 inside a voiced span, easing in
    over DUCK_LEAD_S before it and out over DUCK_RELEASE_S after it (raised cosine)."""
    lead, release = round(DUCK_LEAD_S * rate), round(DUCK_RELEASE_S * rate)
    depth = np.zeros(positions.shape, dtype=np.float64)
    if not positions.size:
        return depth
    first, last = int(positions[0]), int(positions[-1])
    for start, end in spans:
        if end + release < first or start - lead > last:
            continue
        before = np.clip((positions - (start - lead)) / max(lead, 1), 0.0, 1.0)
        after = np.clip(1.0 - (positions - end) / max(release, 1), 0.0, 1.0)
        ramp = np.where(positions < start, before, np.where(positions >= end, after, 1.0))
        depth = np.maximum(depth, 0.5 - 0.5 * np.cos(np.pi * ramp))
    return depth


# ---------------------------------------------------------------------- the mix


class _BedReader:
    """The bed as long as the track: its own frames, cut with a fade where the track is
    shorter, or looped with an equal-power crossfade where it is longer."""

    def __init__(self, bed: BedLayer, placed: Layout) -> None:
        self.bed = bed
        self.channels = placed.channels
        self.total = placed.total
        self.overlap = min(round(LOOP_CROSSFADE_S * placed.rate), bed.frames // 2)
        self.period = max(1, bed.frames - self.overlap)
        # The bed's own end is left as rendered; a bed cut short or looped ends under a fade.
        fitted = placed.total != bed.frames
        trim = fade_frames(round(TRIM_FADE_S * 1000), placed.rate, placed.total)
        self.trim = trim if fitted else 0
        self.file = sf.SoundFile(str(bed.path))

    def __enter__(self) -> _BedReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.file.close()

    def read(self, start: int, count: int) -> Block:
        """Frames [start, start + count) of the fitted bed, at the bed's gain (before
        ducking)."""
        out = np.zeros((count, self.channels), dtype=np.float32)
        looping = self.total > self.bed.frames
        first = max(0, (start - self.bed.frames) // self.period + 1) if looping else 0
        last = (start + count - 1) // self.period if looping else 0
        for k in range(first, last + 1):
            self._add_pass(out, k, start, count, looping)
        positions = np.arange(start, start + count, dtype=np.int64)
        gain = self.bed.gain * fade_out_gain(positions, self.trim, self.total)
        return (out * gain[:, None]).astype(np.float32)

    def _add_pass(self, out: Block, k: int, start: int, count: int, looping: bool) -> None:
        """Add pass `k` of the loop (pass 0 alone when not looping) where it overlaps."""
        offset = k * self.period
        low, high = max(start, offset), min(start + count, offset + self.bed.frames)
        if low >= high:
            return
        self.file.seek(low - offset)
        frames = audio.match_channels(
            self.file.read(high - low, dtype="float32", always_2d=True), self.channels
        )
        if looping:
            local = np.arange(low - offset, low - offset + frames.shape[0], dtype=np.int64)
            gain = fade_in_gain(local, self.overlap if k else 0)
            gain = gain * fade_out_gain(local, self.overlap, self.bed.frames)
            frames = frames * gain[:, None].astype(np.float32)
        out[low - start : low - start + frames.shape[0]] += frames


class _Taker:
    """Exactly `count` frames at a time from a stream of blocks of any size; silence once the
    stream ends."""

    def __init__(self, blocks: Iterator[Block], channels: int) -> None:
        self.blocks = blocks
        self.channels = channels
        self.pending = np.zeros((0, channels), dtype=np.float32)

    def take(self, count: int) -> Block:
        parts, have = [self.pending], self.pending.shape[0]
        while have < count:
            block = next(self.blocks, None)
            if block is None:
                parts.append(np.zeros((count - have, self.channels), dtype=np.float32))
                break
            parts.append(block)
            have += block.shape[0]
        joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self.pending = joined[count:]
        return joined[:count]


def _voice_blocks(
    voice: VoiceLayer, rate: int, channels: int, cancel: threading.Event | None
) -> Iterator[Block]:
    """The voice from the track's first frame: silence up to each chunk's place, then it."""
    at = 0
    for chunk in voice.chunks:
        yield from audio.silence_blocks(chunk.start - at, channels)
        yield from audio.stream_segments([audio.Segment(path=chunk.path)], rate, channels, cancel)
        at = chunk.end


def mixed_blocks(placed: Layout, cancel: threading.Event | None = None) -> Iterator[Block]:
    """The track, block by block: each bed fitted, ducked under the voices and at its gain,
    plus each voice at its gain, clipped to full scale."""
    spans = placed.voiced_spans()
    channels = placed.channels
    voices = [
        (voice.gain, _Taker(_voice_blocks(voice, placed.rate, channels, cancel), channels))
        for voice in placed.voices
    ]
    with contextlib.ExitStack() as stack:
        beds = [stack.enter_context(_BedReader(bed, placed)) for bed in placed.beds]
        for start in range(0, placed.total, audio.BLOCK_FRAMES):
            if cancel is not None and cancel.is_set():
                raise Interrupted("interrupted while mixing")
            count = min(audio.BLOCK_FRAMES, placed.total - start)
            positions = np.arange(start, start + count, dtype=np.int64)
            depth = duck_depth(positions, spans, placed.rate)
            mix = np.zeros((count, placed.channels), dtype=np.float32)
            for bed in beds:
                duck = 10 ** (-bed.bed.duck_db * depth / 20)
                mix += bed.read(start, count) * duck[:, None].astype(np.float32)
            for gain, taker in voices:
                mix += taker.take(count) * np.float32(gain)
            yield np.clip(mix, -1.0, 1.0)


def mix_audio(
    placed: Layout,
    *,
    cancel: threading.Event | None = None,
    fade_in_ms: int = 0,
    fade_out_ms: int = 0,
) -> audio.MasterAudio:
    """The mixed track with its fades, to be written as a master or fed to mastering."""

    def blocks() -> Iterator[Block]:
        mixed = mixed_blocks(placed, cancel)
        if not (fade_in_ms or fade_out_ms):
            return mixed
        return apply_fades(
            mixed,
            total=placed.total,
            fade_in=fade_frames(fade_in_ms, placed.rate, placed.total),
            fade_out=fade_frames(fade_out_ms, placed.rate, placed.total),
        )

    return audio.MasterAudio(placed.rate, placed.channels, blocks, frames=placed.total)
