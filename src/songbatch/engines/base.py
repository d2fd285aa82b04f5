"""The engine Protocol and the plain data that crosses process boundaries."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from songbatch.errors import EngineError

Kind = Literal["speech", "music"]
# `batch_size: auto`: the most jobs one call is handed; the engine sizes its batches below this
# from its device's free memory once its model is loaded.
AUTO_BATCH_CEILING = 32


@dataclass(frozen=True)
class EngineSpec:
    """Which engine renders one kind of job, as a profile names it."""

    kind: Kind
    engine: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    # Longest text one call may take; the planner splits speech on sentence bounds below it.
    max_chars: int = 400
    # Most jobs the coordinator hands an engine in one call (equal-length music tracks); the
    # engine may split a batch further to fit its device's memory.
    batch_size: int = 1
    # Set by `batch_size: auto`: the engine's `batch_limit` comes from free memory at load.
    batch_auto: bool = False


@dataclass(frozen=True)
class JobRequest:
    """A job's inputs as the planner decides them and the ledger keeps them (`jobs.request`):
    what a worker hands its engine (`for_engine`) and Replicate's input mapping reads. The
    voice is its clip's sha256; the coordinator knows where the file is.

    `to_dict` and `from_dict` are its JSON, the only code that knows it: what the planner's
    dict always held (a speech job's `voice`, a music job's `lyrics` and `duration_s`), so rows
    written before the type read back the same (tests/test_typed_boundaries.py)."""

    kind: Kind
    text: str  # speech: the words; music: the prompt
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    voice: str | None = None  # speech: the reference clip's sha256
    lyrics: str | None = None  # music
    duration_s: float | None = None  # music: target length

    def __post_init__(self) -> None:
        # Each kind's JSON has only its own fields: another kind's would be lost on the way.
        if self.kind == "speech" and (self.lyrics is not None or self.duration_s is not None):
            raise ValueError("a speech request has no lyrics or duration")
        if self.kind == "music" and self.voice is not None:
            raise ValueError("a music request has no voice")

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "speech":
            return {
                "kind": "speech",
                "text": self.text,
                "seed": self.seed,
                "params": self.params,
                "voice": self.voice,
            }
        return {
            "kind": "music",
            "text": self.text,
            "lyrics": self.lyrics,
            "duration_s": self.duration_s,
            "seed": self.seed,
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRequest:
        return cls(
            kind=data["kind"],
            text=data["text"],
            seed=data["seed"],
            params=dict(data.get("params") or {}),
            voice=data.get("voice"),
            lyrics=data.get("lyrics"),
            duration_s=data.get("duration_s"),
        )

    def for_engine(self, key: str, voice_path: str | None) -> RenderRequest:
        """The request as `key`'s engine gets it, the voice as the file at `voice_path`."""
        return RenderRequest(
            key=key,
            kind=self.kind,
            text=self.text,
            seed=int(self.seed),
            params=dict(self.params),
            voice_path=voice_path,
            lyrics=self.lyrics,
            duration_s=self.duration_s,
        )


@dataclass(frozen=True)
class RenderRequest:
    """One job's inputs as an engine gets them (from a JobRequest). Everything here but the
    voice file's path (its content's hash instead) is part of the job key (planner.job_key)."""

    key: str
    kind: Kind
    text: str  # speech: the words; music: the prompt
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    voice_path: str | None = None  # speech: reference audio
    lyrics: str | None = None  # music: optional lyrics
    duration_s: float | None = None  # music: target length


class RenderResult:
    """Audio as float32 in [-1, 1], shape (samples,) for mono or (samples, channels).

    `finish` is a last step on the audio that keeps its length (Chatterbox's watermark), run
    once, by whoever first reads `audio`: in a worker that is the writer thread, so the step
    runs while the device renders the next batch instead of before it."""

    def __init__(
        self,
        audio: npt.NDArray[np.float32],
        sample_rate: int,
        info: dict[str, Any] | None = None,
        finish: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None = None,
    ) -> None:
        self._audio = audio
        self.sample_rate = sample_rate
        self.info: dict[str, Any] = {} if info is None else info
        self._finish = finish
        self._finishing = threading.Lock()

    @property
    def audio(self) -> npt.NDArray[np.float32]:
        with self._finishing:
            if self._finish is not None:
                self._audio = self._finish(self._audio)
                self._finish = None
            return self._audio

    @property
    def duration_s(self) -> float:
        return float(self._audio.shape[0]) / float(self.sample_rate)

    def __repr__(self) -> str:
        return f"RenderResult({self.duration_s:.2f} s at {self.sample_rate} Hz, {self.info})"


# Engines call this whenever they make progress; the worker turns calls into lease heartbeats.
ProgressFn = Callable[[], None]


class Engine(Protocol):
    """Loaded once per worker process; renders requests one batch at a time."""

    spec: EngineSpec
    sample_rate: int

    def render(
        self, requests: Sequence[RenderRequest], progress: ProgressFn
    ) -> Sequence[RenderResult | EngineError]:
        """One result per request, in order. An EngineError in a request's place fails that job
        alone; raising fails every job of the batch."""
        ...

    def close(self) -> None: ...


def batch_limit(engine: Engine) -> int:
    """Most jobs the engine takes in one call on its device: an engine that sizes its batches
    says so with a `batch_limit` attribute; otherwise its profile's `batch_size` holds."""
    limit = getattr(engine, "batch_limit", None)
    return max(1, int(limit)) if limit is not None else max(1, engine.spec.batch_size)
