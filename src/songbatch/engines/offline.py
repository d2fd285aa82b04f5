"""The offline engine: no GPU, no weights, no token.

Speech is real (espeak-ng through `engines.espeak`): robotic but intelligible, for dry runs,
proof-listening, CI and the quickstart. Music is a SKETCH: a deterministic chord pad with a beat
whose tempo and key are derived from the prompt, so that album plumbing (lengths, tags, assembly)
can be exercised end to end. It is a placeholder and says so in every result's `info`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from songbatch.engines import espeak
from songbatch.engines.base import (
    Engine,
    EngineSpec,
    ProgressFn,
    RenderRequest,
    RenderResult,
)
from songbatch.errors import EngineError

# Leave this much of espeak's own leading/trailing silence; our pauses control spacing.
SPEECH_EDGE_S = 0.05
# Samples quieter than this (about -50 dBFS) count as silence when trimming.
_SILENCE_THRESHOLD = 100  # int16
# What a request with no speakable characters renders as.
_UNSPEAKABLE_S = 0.25
# Heartbeat at most this often, measured in rendered audio.
_PROGRESS_EVERY_S = 0.2

MUSIC_SAMPLE_RATE = 32000
MUSIC_CHANNELS = 2
MUSIC_DEFAULT_DURATION_S = 30.0
_MUSIC_BLOCK = 65536  # frames generated at a time: bounds temporaries for hour-long tracks
_MUSIC_PEAK = 0.5  # about -6 dBFS


def load(spec: EngineSpec, device: str) -> Engine:
    """Engine factory named in the registry. `device` is ignored: everything runs on the CPU."""
    if spec.kind == "speech":
        return OfflineSpeech(spec)
    if spec.kind == "music":
        return OfflineMusic(spec)
    raise EngineError(f"offline engine cannot render kind {spec.kind!r}", retryable=False)


# ---------------------------------------------------------------------------------------------
# Speech


@dataclass(frozen=True)
class _Voice:
    name: str
    rate: int | None
    pitch: int | None


# Languages whose espeak voice file is named otherwise (espeak's "en" is British English).
_ESPEAK_ALIASES = {"zh": "cmn"}


@functools.lru_cache(maxsize=64)
def voice_for_language(language: str) -> str:
    """espeak's voice for a BCP-47 tag: the whole tag if espeak has it (`en-gb`, `pt-br`), else
    its language (`zh-Hant-TW` -> `zh`); a language espeak lacks fails the job with its name."""
    primary = language.split("-")[0].lower()
    candidates = [language, language.lower(), primary, _ESPEAK_ALIASES.get(primary, primary)]
    for candidate in dict.fromkeys(candidates):
        try:
            espeak.check_voice(candidate)
        except EngineError:
            continue
        return candidate
    raise EngineError(f"espeak-ng has no voice for language {language!r}", retryable=False)


@functools.lru_cache(maxsize=64)
def check_espeak_voice(voice: str) -> None:
    """Raise EngineError when espeak-ng has no voice `voice` (the planner asks before a run)."""
    espeak.check_voice(voice)


def _voice_params(params: dict[str, Any]) -> _Voice:
    if params.get("voice"):
        name = str(params["voice"])
    else:
        name = voice_for_language(str(params.get("language") or "en"))
    rate = params.get("rate")
    pitch = params.get("pitch")
    return _Voice(
        name=str(name),
        rate=None if rate is None else int(rate),
        pitch=None if pitch is None else int(pitch),
    )


class OfflineSpeech:
    """espeak-ng speech: 22050 Hz mono float32.

    Params (profile, overridable per request): `voice` (espeak voice name; by default the one
    for the `language` param, which the planner sets from the manifest's language), `rate`
    (words per minute, 80-450), `pitch` (0-99).
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.sample_rate = espeak.sample_rate()
        espeak.check_voice(_voice_params(spec.params).name)

    def render(self, requests: Sequence[RenderRequest], progress: ProgressFn) -> list[RenderResult]:
        return [self._render_one(request, progress) for request in requests]

    def _render_one(self, request: RenderRequest, progress: ProgressFn) -> RenderResult:
        text = request.text.strip()
        if not text:
            raise EngineError(f"job {request.key}: no text to speak", retryable=False)
        voice = _voice_params({**self.spec.params, **request.params})
        started = time.perf_counter()
        samples = espeak.synthesize(
            text,
            voice=voice.name,
            rate=voice.rate,
            pitch=voice.pitch,
            on_samples=_throttled(progress, int(self.sample_rate * _PROGRESS_EVERY_S)),
            # The planner writes a lexicon's phonemes as [[...]] for this engine (its registry
            # entry says "espeak") and turns a book's own "[[" into "[": text without them
            # renders exactly as it did before this flag.
            phonemes=True,
        )
        audio = trim_silence(samples, self.sample_rate)
        info: dict[str, Any] = {"engine": "offline", "voice": voice.name}
        if audio.size == 0:
            # Nothing speakable (a "* * *" scene break): a short pause, not a failed book.
            audio = np.zeros(round(_UNSPEAKABLE_S * self.sample_rate), dtype=np.float32)
            info["silent"] = True
        info["render_s"] = round(time.perf_counter() - started, 4)
        return RenderResult(audio=audio, sample_rate=self.sample_rate, info=info)

    def close(self) -> None:
        """Nothing to release: the library is loaded per synthesis."""


def _throttled(progress: ProgressFn, every_samples: int) -> espeak.SamplesFn:
    """An on_samples callback that calls `progress()` once per `every_samples` of audio."""
    pending = 0

    def on_samples(count: int) -> None:
        nonlocal pending
        pending += count
        if pending >= every_samples:
            pending = 0
            progress()

    return on_samples


def trim_silence(samples: npt.NDArray[np.int16], sample_rate: int) -> npt.NDArray[np.float32]:
    """int16 -> float32, keeping at most SPEECH_EDGE_S of quiet at either end."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > _SILENCE_THRESHOLD)
    if loud.size == 0:
        return np.zeros(0, dtype=np.float32)
    edge = int(SPEECH_EDGE_S * sample_rate)
    start = max(0, int(loud[0]) - edge)
    stop = min(samples.shape[0], int(loud[-1]) + 1 + edge)
    return (samples[start:stop].astype(np.float32) / 32768.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Music (sketch)

_KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Scale degrees (semitones above the root) of a four-chord loop, one chord per bar.
_PROGRESSIONS = {
    "major": ((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12)),  # I V vi IV
    "minor": ((0, 3, 7), (8, 12, 15), (3, 7, 10), (10, 14, 17)),  # i VI III VII
}


@dataclass(frozen=True)
class SketchPlan:
    """Everything the sketch derives from (seed, prompt)."""

    tempo_bpm: int
    root: int  # 0 = C
    mode: str  # "major" | "minor"
    noise_seed: int

    @property
    def key(self) -> str:
        return f"{_KEYS[self.root]} {self.mode}"


def sketch_plan(seed: int, prompt: str) -> SketchPlan:
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    return SketchPlan(
        tempo_bpm=70 + digest[0] % 71,
        root=digest[1] % 12,
        mode="major" if digest[2] % 2 == 0 else "minor",
        noise_seed=int.from_bytes(digest[3:11], "little"),
    )


class OfflineMusic:
    """A labelled SKETCH, not music: 32 kHz stereo float32, exactly round(duration_s * 32000)
    samples, deterministic in (seed, prompt). `duration_s` comes from the request, else the
    `duration_s` param, else 30 s.
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.sample_rate = MUSIC_SAMPLE_RATE

    def render(self, requests: Sequence[RenderRequest], progress: ProgressFn) -> list[RenderResult]:
        return [self._render_one(request, progress) for request in requests]

    def _render_one(self, request: RenderRequest, progress: ProgressFn) -> RenderResult:
        duration = request.duration_s
        if duration is None:
            duration = float(self.spec.params.get("duration_s", MUSIC_DEFAULT_DURATION_S))
        if not math.isfinite(duration) or duration <= 0:
            raise EngineError(f"job {request.key}: duration_s must be > 0", retryable=False)
        plan = sketch_plan(request.seed, request.text)
        audio = render_sketch(plan, round(duration * self.sample_rate), self.sample_rate, progress)
        info = {
            "engine": "offline",
            "sketch": True,
            "tempo_bpm": plan.tempo_bpm,
            "key": plan.key,
        }
        return RenderResult(audio=audio, sample_rate=self.sample_rate, info=info)

    def close(self) -> None:
        """Nothing to release."""


def render_sketch(
    plan: SketchPlan, frames: int, sample_rate: int, progress: ProgressFn | None = None
) -> npt.NDArray[np.float32]:
    """Fill a (frames, 2) float32 array block by block, then scale it to the target peak."""
    out = np.empty((frames, MUSIC_CHANNELS), dtype=np.float32)
    noise = np.random.default_rng(plan.noise_seed).uniform(-1.0, 1.0, 4096)
    for start in range(0, frames, _MUSIC_BLOCK):
        stop = min(frames, start + _MUSIC_BLOCK)
        out[start:stop] = _sketch_block(plan, start, stop, sample_rate, noise)
        _fade(out, start, stop, frames, sample_rate)
        if progress is not None:
            progress()
    _normalise_peak(out, _MUSIC_PEAK)
    return out


def _sketch_block(
    plan: SketchPlan, start: int, stop: int, sr: int, noise: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Samples [start, stop) of pad + kick + hat; each depends on its index only."""
    index = np.arange(start, stop, dtype=np.int64)
    t = index / sr
    beat_s = 60.0 / plan.tempo_bpm
    beat = np.floor(t / beat_s)
    in_beat = t - beat * beat_s
    left = right = 0.55 * _pad(plan, t, beat, in_beat, beat_s)
    # A slow opposite-phase level wobble between channels so the sketch is audibly stereo.
    shimmer = 0.04 * np.sin(2 * np.pi * 0.25 * t)
    left = left * (1 + shimmer)
    right = right * (1 - shimmer)
    kick = 0.35 * np.sin(2 * np.pi * 55 * in_beat + 9 * (1 - np.exp(-30 * in_beat)))
    kick *= np.exp(-10 * in_beat)
    off = np.mod(in_beat - beat_s / 2, beat_s)
    hat = 0.08 * noise[index % noise.size] * np.exp(-90 * off)
    block = np.empty((stop - start, 2), dtype=np.float64)
    block[:, 0] = left + kick + hat
    block[:, 1] = right + kick + hat
    return block


def _pad(
    plan: SketchPlan,
    t: npt.NDArray[np.float64],
    beat: npt.NDArray[np.float64],
    in_beat: npt.NDArray[np.float64],
    beat_s: float,
) -> npt.NDArray[np.float64]:
    """One chord per bar of four beats, enveloped to zero at bar lines (no phase clicks)."""
    chords = np.array(_PROGRESSIONS[plan.mode], dtype=np.float64)
    bar = (beat // 4).astype(np.int64)
    degrees = chords[bar % len(chords)]  # (n, 3)
    # Root note around A3 (220 Hz) shifted to the key; chord tones in equal temperament.
    freqs = 220.0 * 2.0 ** ((plan.root - 9 + degrees) / 12.0)
    tones = np.sin(2 * np.pi * freqs * t[:, None]).sum(axis=1) / 3.0
    bass = np.sin(2 * np.pi * freqs[:, 0] / 2 * t)
    position = ((beat % 4) * beat_s + in_beat) / (4 * beat_s)  # 0..1 within the bar
    envelope = np.minimum(1.0, position / 0.05) * np.minimum(1.0, (1.0 - position) / 0.1)
    result: npt.NDArray[np.float64] = (0.7 * tones + 0.3 * bass) * envelope
    return result


def _fade(out: npt.NDArray[np.float32], start: int, stop: int, frames: int, sr: int) -> None:
    """Linear fade in and out (2 s, or a quarter of a short track) applied in place."""
    fade = max(1, min(2 * sr, frames // 4))
    index = np.arange(start, stop)
    gain = np.minimum(1.0, np.minimum((index + 1) / fade, (frames - index) / fade))
    out[start:stop] *= gain[:, None].astype(np.float32)


def _normalise_peak(out: npt.NDArray[np.float32], peak: float) -> None:
    """Scale in place so the loudest sample is `peak`; blockwise, so no full-size temporary."""
    loudest = 0.0
    for start in range(0, out.shape[0], _MUSIC_BLOCK):
        block = out[start : start + _MUSIC_BLOCK]
        if block.size:
            loudest = max(loudest, float(np.abs(block).max()))
    if loudest > 0:
        out *= np.float32(peak / loudest)
