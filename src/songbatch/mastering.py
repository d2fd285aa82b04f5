"""Mastering a unit's audio to a preset: measured, brought to the preset's level, peaks held
under its true-peak limit, resampled to its rate, with room tone under the silences where the
preset asks for it. The audio comes as the assembly lays it out (`audio.MasterAudio`: the
chunks and pauses, or a track's mix), with no unmastered FLAC of it in between: its level is
known from the chunks' recorded power (RMS) or read once, then the samples are fed to the one
ffmpeg pass that masters them, writes the mastered FLAC and measures what it wrote. Memory
stays flat in a chapter's length.

The meters are the ones `songbatch check` uses, so mastering and checking cannot disagree:
ebur128 (ITU-R BS.1770 / EBU R128) for loudness; for RMS, astats's own sum (every sample
squared, in double), and volumedetect on the written audio (0.1 dB, for the decision whether
to correct). ffmpeg's volume, aresample and alimiter filters master; room tone is added to
the samples as they are fed. Each chapter is brought to the same target, so the chapters of
one book play at one level, and the .m4b made of them at that level too.

A mastered file is content-keyed like the master it is made from (`mastered_key`): the raw
master's key, the preset and MASTERING_VERSION. Changing the preset re-masters and re-encodes;
nothing is rendered again.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from songbatch.audio import MasterAudio, feed_of, piped_input, power_db, power_of
from songbatch.errors import EngineError
from songbatch.presets import Preset
from songbatch.quality import LEVEL_METERS, QUICK_RMS, run_meter

# Part of every mastered file's key: a change to the chain below that a listener or `check`
# could tell re-masters what exists. Not bumped when the room tone moved from anoisesrc to
# numpy (other noise, the same -75 dB): re-mastering every book for an inaudible change would
# re-encode all their files.
MASTERING_VERSION = 1
# The limiter works on the master oversampled this many times, so it also holds the peaks
# between samples (true peak) that a decoder reconstructs. Relative to the master's own rate
# (an engine's 22.05 or 24 kHz): nothing lies above its band, so 4x of it finds the same
# peaks as 4x of the 44.1 kHz it may be resampled to, at half the cost.
_OVERSAMPLE = 4
# Room tone: pink noise 75 dB under full scale (RMS), far under ACX's -60 dB noise
# floor and inaudible under speech, so a silence is a quiet room rather than digital zero.
ROOM_TONE_DB = -75.0
# The room tone is one stretch of noise, looped: shaped in the frequency domain, so it loops
# without a seam. 2^19 frames: about 24 s at an engine's rate, too long to hear it repeat.
_ROOM_TONE_FRAMES = 2**19
# Further passes correct the level while the limiter took more than the preset's slack off
# the target; one pass is the rule, two common for a peaky voice at a streaming level.
_MAX_PASSES = 4
_MAX_CORRECTION_DB = 3.0


def mastered_key(master_key: str, preset: Preset) -> str:
    return f"{master_key}-{preset.name.value}-m{MASTERING_VERSION}"


# What `mastered_key` adds to a master's key, for any preset and version (an older version's
# file is still one of ours).
MASTERED_SUFFIX = "[a-z]+-m[0-9]+"


def master_to(
    laid: MasterAudio,
    target: Path,
    preset: Preset,
    *,
    name: str,
    cancel: threading.Event | None = None,
) -> float:
    """Write `laid` mastered to `preset` at `target` (FLAC, 24-bit); the level it came out
    at (as the preset measures it, RMS to 0.1 dB). Its level is read first, then one pass
    writes it, and more only while the limiter pulled the level off the target. `name` says
    what is mastered in an error."""
    if preset.measure is None or preset.target is None:
        raise ValueError(f"preset {preset.name.value} does not master")
    gain = _finite_gain(preset.target - _level(laid, preset.measure, name, cancel), name)
    for _ in range(_MAX_PASSES):
        after = _render(laid, target, preset, gain, name, cancel)
        short = preset.target - after
        if abs(short) <= preset.mastering_slack_db:
            break
        # The limiter took some of the gain (a peaky voice under a -1.5 dBTP ceiling): more.
        gain += max(-_MAX_CORRECTION_DB, min(_MAX_CORRECTION_DB, short))
    return after


def _level(
    laid: MasterAudio, how: Literal["rms", "lufs"], name: str, cancel: threading.Event | None
) -> float:
    """The level of the samples before mastering: the RMS from the chunks' recorded power
    where they carry it, else summed here as they are read (the figure astats gives, at a
    read's cost); loudness from ffmpeg's ebur128 fed the same samples."""
    if how == "rms":
        known = None if laid.known_rms_db is None else laid.known_rms_db()
        return rms_db(laid.blocks()) if known is None else known
    meter = LEVEL_METERS[how]
    args = [*piped_input(laid.sample_rate, laid.channels), "-af", meter.filter, "-f", "null", "-"]
    return run_meter(name, args, meter, cancel=cancel, feed=feed_of(laid.blocks()))


def rms_db(blocks: Iterable[npt.NDArray[np.float32]]) -> float:
    """The unweighted RMS of every sample of every channel, in dBFS (-inf for silence): what
    astats calls the overall RMS level. Summed in double, as astats sums."""
    power, count = 0.0, 0
    for block in blocks:
        power += power_of(block)
        count += block.size
    return power_db(power, count)


def _finite_gain(gain: float, name: str) -> float:
    if not math.isfinite(gain):
        raise EngineError(f"{name}: silent throughout, nothing to master", retryable=False)
    return gain


def _render(
    laid: MasterAudio,
    target: Path,
    preset: Preset,
    gain_db: float,
    name: str,
    cancel: threading.Event | None,
) -> float:
    """Write `laid` at `gain_db` through the preset's chain; the level written, measured by
    a meter on the graph's output in the same pass."""
    assert preset.measure is not None
    rate = preset.sample_rate or laid.sample_rate
    channels = preset.channels or laid.channels
    # Raw samples on stdin come in packets of 1,024; the chain runs a sixth faster on 4,096.
    voice = ["asetnsamples=n=4096:p=0", f"volume={gain_db:.4f}dB"]
    if channels != laid.channels:
        voice.append(f"aformat=channel_layouts={'mono' if channels == 1 else 'stereo'}")
    if preset.limiter_ceiling_db is not None:
        limit = 10 ** (preset.limiter_ceiling_db / 20)
        voice += [
            f"aresample={laid.sample_rate * _OVERSAMPLE}",
            f"alimiter=limit={limit:.6f}:level=false:latency=true:attack=2:release=80",
        ]
    voice.append(f"aresample={rate}")
    graph = f"[0:a]{','.join(voice)}[mastered]"
    blocks = laid.blocks()
    if preset.room_tone:
        blocks = with_room_tone(blocks, laid.sample_rate, ROOM_TONE_DB - gain_db)
    meter = QUICK_RMS if preset.measure == "rms" else LEVEL_METERS[preset.measure]
    # A branch of its own: volumedetect takes 16-bit samples, and the file keeps 24.
    graph += f";[mastered]asplit[out][probe];[probe]{meter.filter},anullsink"
    return run_meter(
        name,
        [
            *piped_input(laid.sample_rate, laid.channels),
            "-filter_complex",
            graph,
            "-map",
            "[out]",
            "-c:a",
            "flac",
            "-sample_fmt",
            "s32",
            "-bits_per_raw_sample",
            "24",
            "-f",
            "flac",
            str(target),
        ],
        meter,
        cancel=cancel,
        feed=feed_of(blocks),
    )


def with_room_tone(
    blocks: Iterable[npt.NDArray[np.float32]], rate: int, level_db: float
) -> Iterator[npt.NDArray[np.float32]]:
    """`blocks` with pink noise at `level_db` RMS under them (the same in every channel, as a
    room heard through one microphone). Added before the gain, at its inverse, so the room
    sits at ROOM_TONE_DB in the mastered file: a numpy add where ffmpeg's anoisesrc and amix
    cost a quarter of a mastering pass."""
    tone = _pink_loop(rate) * np.float32(10 ** (level_db / 20))
    at = 0
    for block in blocks:
        count = block.shape[0]
        index = np.arange(at, at + count) % tone.size
        yield block + tone[index][:, None]
        at += count


@functools.lru_cache(maxsize=4)
def _pink_loop(rate: int) -> npt.NDArray[np.float32]:
    """Pink noise (power falling 3 dB an octave, from 20 Hz up) at RMS 1, periodic in its
    length; the same every time (seeded)."""
    rng = np.random.default_rng(1)
    spectrum = rng.normal(size=_ROOM_TONE_FRAMES // 2 + 1) + 1j * rng.normal(
        size=_ROOM_TONE_FRAMES // 2 + 1
    )
    freqs = np.fft.rfftfreq(_ROOM_TONE_FRAMES, 1 / rate)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, _ROOM_TONE_FRAMES)
    loop: npt.NDArray[np.float32] = (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)
    return loop
