"""Mastering a unit's master to a preset: measured, brought to the preset's level, peaks held
under its true-peak limit, resampled to its rate, with room tone under the silences where the
preset asks for it. Every step is one streamed ffmpeg pass (memory flat in a chapter's
length): `quality.level` measures (ffmpeg's ebur128, ITU-R BS.1770 / EBU R128, or astats: the
meters `songbatch check` uses, so mastering and checking cannot disagree), and ffmpeg's
volume, alimiter and anoisesrc filters master. Each chapter is brought to the same target, so
the chapters of one book play at one level, and the .m4b made of them at that level too.

A mastered file is content-keyed like the master it is made from (`mastered_key`): the raw
master's key, the preset and MASTERING_VERSION. Changing the preset re-masters and re-encodes;
nothing is rendered again.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import soundfile as sf

from songbatch.errors import EngineError
from songbatch.presets import Preset
from songbatch.quality import level, level_filter, run_measuring

# Part of every mastered file's key: a change to the chain below re-masters what exists.
MASTERING_VERSION = 1
# The limiter works on the master oversampled this many times, so it also holds the peaks
# between samples (true peak) that a decoder reconstructs. Relative to the master's own rate
# (an engine's 22.05 or 24 kHz): nothing lies above its band, so 4x of it finds the same
# peaks as 4x of the 44.1 kHz it may be resampled to, at half the cost.
_OVERSAMPLE = 4
# Room tone: pink noise 75 dB under full scale (RMS), far under ACX's -60 dB noise
# floor and inaudible under speech, so a silence is a quiet room rather than digital zero.
ROOM_TONE_DB = -75.0
# anoisesrc's amplitude is the noise's peak: its pink noise measured here at RMS = a / 5.3.
_PINK_CREST = 5.3
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
    source: Path,
    target: Path,
    preset: Preset,
    *,
    cancel: threading.Event | None = None,
) -> float:
    """Write `source` mastered to `preset` at `target` (FLAC, 24-bit); the level it came out
    at (as the preset measures it). One pass, and more only while the limiter pulled the level
    off the target."""
    if preset.measure is None or preset.target is None:
        raise ValueError(f"preset {preset.name.value} does not master")
    how = preset.measure
    gain = _finite_gain(preset.target - level(source, how, cancel=cancel), source)
    for _ in range(_MAX_PASSES):
        after = _render(source, target, preset, gain, cancel)
        short = preset.target - after
        if abs(short) <= preset.mastering_slack_db:
            break
        # The limiter took some of the gain (a peaky voice under a -1.5 dBTP ceiling): more.
        gain += max(-_MAX_CORRECTION_DB, min(_MAX_CORRECTION_DB, short))
    return after


def _finite_gain(gain: float, source: Path) -> float:
    if not math.isfinite(gain):
        raise EngineError(f"{source}: silent throughout, nothing to master", retryable=False)
    return gain


def _render(
    source: Path, target: Path, preset: Preset, gain_db: float, cancel: threading.Event | None
) -> float:
    """Write `source` at `gain_db` through the preset's chain; the level written, measured by
    the graph's last filter in the same pass."""
    assert preset.measure is not None
    info = sf.info(str(source))
    rate = preset.sample_rate or int(info.samplerate)
    channels = preset.channels or int(info.channels)
    voice = [f"volume={gain_db:.4f}dB"]
    if channels != info.channels:
        voice.append(f"aformat=channel_layouts={'mono' if channels == 1 else 'stereo'}")
    if preset.limiter_ceiling_db is not None:
        limit = 10 ** (preset.limiter_ceiling_db / 20)
        voice += [
            f"aresample={int(info.samplerate) * _OVERSAMPLE}",
            f"alimiter=limit={limit:.6f}:level=false:latency=true:attack=2:release=80",
        ]
    voice.append(f"aresample={rate}")
    graph = f"[0:a]{','.join(voice)}[voice]"
    if preset.room_tone:
        amplitude = 10 ** (ROOM_TONE_DB / 20) * _PINK_CREST
        layout = "mono" if channels == 1 else "stereo"
        graph += (
            f";anoisesrc=r={rate}:c=pink:a={amplitude:.8f}:seed=1,"
            f"aformat=channel_layouts={layout}[room]"
            ";[voice][room]amix=inputs=2:duration=first:normalize=false[out]"
        )
    else:
        graph = graph.replace("[voice]", "[out]")
    graph = graph.replace("[out]", "[mastered]") + f";[mastered]{level_filter(preset.measure)}[out]"
    return run_measuring(
        source,
        [
            "-i",
            str(source),
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
        preset.measure,
        cancel=cancel,
    )
