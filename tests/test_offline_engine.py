"""The offline engine: real espeak-ng speech and the labelled music sketch."""

from __future__ import annotations

import numpy as np
import pytest

from songbatch.engines import EngineSpec, RenderRequest, load_engine
from songbatch.engines.base import Engine
from songbatch.errors import EngineError, EngineUnavailable

SENTENCE = "Hello world. This is a test."


def speech_engine(**params: object) -> Engine:
    return load_engine(
        EngineSpec(kind="speech", engine="offline", model="espeak", params=params), "cpu"
    )


def music_engine() -> Engine:
    return load_engine(EngineSpec(kind="music", engine="offline", model="sketch"), "cpu")


def speech(text: str, **params: object) -> RenderRequest:
    return RenderRequest(key="k" * 64, kind="speech", text=text, seed=0, params=params)


def music(prompt: str, seed: int, duration_s: float) -> RenderRequest:
    return RenderRequest(key="m" * 64, kind="music", text=prompt, seed=seed, duration_s=duration_s)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def test_speech_is_audible_22050_hz_mono() -> None:
    engine = speech_engine()
    beats: list[int] = []
    (result,) = engine.render([speech(SENTENCE)], lambda: beats.append(1))
    assert engine.sample_rate == 22050
    assert result.sample_rate == 22050
    assert result.audio.dtype == np.float32
    assert result.audio.ndim == 1
    assert 1.0 <= result.duration_s <= 4.0
    assert rms(result.audio) > 0.02
    assert np.abs(result.audio).max() <= 1.0
    # Heartbeats come from inside synthesis, about every 0.2 s of audio, not once per request.
    assert 3 <= len(beats) <= result.duration_s / 0.2 + 1


def test_speech_is_deterministic() -> None:
    engine = speech_engine()
    first = engine.render([speech(SENTENCE)], lambda: None)[0].audio
    other = engine.render([speech("Something else entirely.")], lambda: None)[0].audio
    second = engine.render([speech(SENTENCE)], lambda: None)[0].audio
    assert other.shape != first.shape or not np.array_equal(other, first)
    assert np.array_equal(first, second)


def test_speech_edges_are_trimmed_to_about_50_ms() -> None:
    (result,) = speech_engine().render([speech(SENTENCE)], lambda: None)
    edge = int(0.05 * result.sample_rate)
    loud = np.flatnonzero(np.abs(result.audio) > 100 / 32768)
    assert loud[0] <= edge
    assert result.audio.shape[0] - 1 - loud[-1] <= edge


def test_speech_params_change_the_voice() -> None:
    engine = speech_engine()
    normal = engine.render([speech(SENTENCE)], lambda: None)[0]
    fast = engine.render([speech(SENTENCE, rate=300)], lambda: None)[0]
    assert fast.duration_s < normal.duration_s * 0.8
    german = speech_engine(language="de").render([speech("Guten Tag.")], lambda: None)[0]
    assert german.info["voice"] == "de"


def test_empty_text_fails_without_retry() -> None:
    with pytest.raises(EngineError) as caught:
        speech_engine().render([speech("   ")], lambda: None)
    assert caught.value.retryable is False


def test_unknown_voice_is_refused_at_load() -> None:
    with pytest.raises(EngineError):
        speech_engine(voice="no-such-voice")


def test_progress_exception_aborts_synthesis() -> None:
    def fail() -> None:
        raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        speech_engine().render([speech(SENTENCE * 3)], fail)


def test_music_sketch_has_exact_length_and_labels() -> None:
    engine = music_engine()
    (result,) = engine.render([music("calm lo-fi piano", 7, 5.3)], lambda: None)
    assert result.sample_rate == 32000
    assert result.audio.shape == (round(5.3 * 32000), 2)
    assert result.audio.dtype == np.float32
    assert result.info["sketch"] is True
    assert 70 <= result.info["tempo_bpm"] <= 140
    assert isinstance(result.info["key"], str)
    peak = float(np.abs(result.audio).max())
    assert 0.45 <= peak <= 0.55  # about -6 dBFS
    assert rms(result.audio[:3200]) < rms(result.audio[len(result.audio) // 2 :])  # fades in


def test_music_sketch_is_deterministic_by_seed_and_prompt() -> None:
    engine = music_engine()

    def render(prompt: str, seed: int) -> np.ndarray:
        return engine.render([music(prompt, seed, 3.0)], lambda: None)[0].audio

    first = render("ambient drone", 1)
    assert np.array_equal(first, render("ambient drone", 1))
    assert not np.array_equal(first, render("ambient drone", 2))
    assert not np.array_equal(first, render("dub techno", 1))


def test_music_needs_a_positive_duration() -> None:
    with pytest.raises(EngineError) as caught:
        music_engine().render([music("x", 1, 0.0)], lambda: None)
    assert caught.value.retryable is False


def test_unknown_kind_is_refused() -> None:
    from songbatch.engines import offline

    spec = EngineSpec(kind="speech", engine="offline", model="x")
    object.__setattr__(spec, "kind", "video")
    with pytest.raises((EngineError, EngineUnavailable)):
        offline.load(spec, "cpu")


def test_unspeakable_text_renders_a_short_pause() -> None:
    (result,) = speech_engine().render([speech("...")], lambda: None)
    assert result.info.get("silent") is True
    assert 0.1 <= result.duration_s <= 0.5
    assert not result.audio.any()
