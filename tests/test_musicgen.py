"""The MusicGen engine on a tiny random MusicGen: CPU, offline, the real transformers code path.

The tiny model's audio is noise; these tests check lengths, batching, windows, seeds and errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers.tiny_musicgen import build_tiny_musicgen  # noqa: E402
from songbatch.engines import (  # noqa: E402
    EngineSpec,
    RenderRequest,
    load_engine,
    musicgen,
)
from songbatch.engines.base import RenderResult  # noqa: E402
from songbatch.engines.musicgen import (  # noqa: E402
    CPU_AUTO_BATCH,
    AutoBatch,
    MusicGenEngine,
    Window,
    auto_batch_limit,
    available_bytes,
    batch_that_fits,
    kv_cache_bytes,
    plan_windows,
    track_bytes,
)
from songbatch.errors import EngineError, EngineUnavailable  # noqa: E402

SR = 32000


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_musicgen(tmp_path_factory.mktemp("tiny-musicgen"))


@pytest.fixture(scope="module")
def engine(tiny_folder: Path) -> Iterator[MusicGenEngine]:
    # A model this small is all thread-sync overhead: one thread is faster, and does not stall
    # when other processes share the CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    loaded = load_engine(
        EngineSpec(kind="music", engine="musicgen", model=str(tiny_folder), batch_size=2), "cpu"
    )
    assert isinstance(loaded, MusicGenEngine)
    yield loaded
    loaded.close()
    torch.set_num_threads(threads)


def track(
    seed: int = 1, duration_s: float = 1.0, prompt: str = "calm piano", **params: Any
) -> RenderRequest:
    return RenderRequest(
        key=f"{prompt}-{seed}-{duration_s}",
        kind="music",
        text=prompt,
        seed=seed,
        params=params,
        duration_s=duration_s,
    )


def ok(results: object) -> list[RenderResult]:
    assert isinstance(results, list)
    assert all(isinstance(result, RenderResult) for result in results), results
    return results


def test_equal_tracks_are_one_generate_call(engine: MusicGenEngine) -> None:
    calls = engine.generate_calls
    beats: list[int] = []
    requests = [track(1, 4.0), track(2, 4.0, "fast rock drums")]
    results = ok(engine.render(requests, lambda: beats.append(1)))
    assert engine.generate_calls == calls + 1
    for result in results:
        assert result.audio.shape == (4 * SR,)
        assert result.audio.dtype == np.float32
        assert np.isfinite(result.audio).all()
        assert np.abs(result.audio).max() <= 1.0
        assert result.sample_rate == SR
        assert result.info["batch"] == 2
        assert result.info["windows"] == 1
        assert result.info["device"] == "cpu"
    # progress() once per decoding step: 4 s at 50 Hz plus the 3-step codebook delay
    assert len(beats) >= 4 * 50


@dataclass
class Spied:
    """What a MusicGen model was asked to do: generate() kwargs, the codes each EnCodec decode
    got (mono: one per window; stereo: left, then right) and how often EnCodec encoded."""

    generate: list[dict[str, Any]]
    decoded: list[Any]  # torch tensors, (1, batch, codebooks per channel, frames)
    encodes: list[int]


def spy(model: Any, monkeypatch: pytest.MonkeyPatch) -> Spied:
    calls = Spied([], [], [])
    codec = model.audio_encoder
    real_generate, real_decode, real_encode = model.generate, codec.decode, codec.encode

    def generate(**kwargs: Any) -> Any:
        calls.generate.append(kwargs)
        return real_generate(**kwargs)

    def decode(audio_codes: Any, *args: Any, **kwargs: Any) -> Any:
        calls.decoded.append(audio_codes)
        return real_decode(audio_codes, *args, **kwargs)

    def encode(*args: Any, **kwargs: Any) -> Any:
        calls.encodes.append(1)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    monkeypatch.setattr(codec, "decode", decode)
    monkeypatch.setattr(codec, "encode", encode)
    return calls


def test_long_track_is_continued_in_windows(
    engine: MusicGenEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = spy(engine.model, monkeypatch)
    beats: list[int] = []
    (result,) = ok(engine.render([track(5, 40.0)], lambda: beats.append(1)))
    assert result.audio.shape == (40 * SR,)
    assert np.isfinite(result.audio).all()
    assert len(beats) >= 40 * 50
    # 30 s, then a window prompted with the codes of the last 12 s that adds the missing 10 s
    assert result.info["windows"] == 2
    first, second = calls.generate
    assert "decoder_input_ids" not in first and "input_values" not in first
    assert first["generation_config"].max_new_tokens == 30 * 50 + 3
    assert "input_values" not in second
    prompt = second["decoder_input_ids"]
    assert prompt.shape == (1 * 4, 12 * 50)  # (batch * codebooks, frames)
    assert torch.equal(prompt, calls.decoded[0][0, :, :, -12 * 50 :].reshape(4, 12 * 50))
    assert second["generation_config"].max_new_tokens == 10 * 50 + 3
    assert calls.encodes == []


# Short windows, so continuation is cheap to test: 2 s = 100 frames, stride 1.2 s = 60 frames,
# prompt 0.8 s = 40 frames. A 4 s track (200 frames) is windows of 100, 40 + 60 and 40 + 40.
SHORT_WINDOW_S = 2.0
SHORT = {"extend_stride": 1.2}
PROMPT_FRAMES = 40


@pytest.fixture
def short_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(musicgen, "WINDOW_S", SHORT_WINDOW_S)


def test_the_spy_sees_an_audio_prompt_being_encoded(
    engine: MusicGenEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check below that windows never encode is only worth something if it would notice."""
    calls = spy(engine.model, monkeypatch)
    inputs = engine.processor(text=["calm piano"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        engine.model.generate(
            **inputs, input_values=torch.zeros(1, 1, 10 * engine.hop), max_new_tokens=5 + 3
        )
    assert calls.encodes == [1]


@pytest.mark.usefixtures("short_windows")
def test_windows_continue_from_the_codes_and_never_encode(
    engine: MusicGenEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = spy(engine.model, monkeypatch)
    requests = [track(5, 4.0, **SHORT), track(6, 4.0, "fast rock drums", **SHORT)]
    results = ok(engine.render(requests, lambda: None))
    for result in results:
        assert result.audio.shape == (4 * SR,)
        assert result.info["windows"] == 3
    assert calls.encodes == []  # no EnCodec round trip: the codes are reused as they are
    assert [codes.shape for codes in calls.decoded] == [
        (1, 2, 4, 100),
        (1, 2, 4, PROMPT_FRAMES + 60),
        (1, 2, 4, PROMPT_FRAMES + 40),
    ]
    first, *continued = calls.generate
    assert "decoder_input_ids" not in first
    for before, after, kwargs in zip(calls.decoded[:-1], calls.decoded[1:], continued, strict=True):
        assert "input_values" not in kwargs
        tail = before[0, :, :, -PROMPT_FRAMES:]  # (batch, codebooks, frames)
        # The layout generate() builds from an audio prompt: a row per (track, codebook).
        assert torch.equal(kwargs["decoder_input_ids"], tail.reshape(2 * 4, PROMPT_FRAMES))
        # ... and generate() kept each track's prompt where it belongs, un-delayed.
        assert torch.equal(after[0, :, :, :PROMPT_FRAMES], tail)


@pytest.mark.usefixtures("short_windows")
def test_continued_tracks_are_exact_reproducible_and_alone(
    engine: MusicGenEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = ok(engine.render([track(3, 4.321, **SHORT)], lambda: None))[0]
    assert odd.audio.shape == (round(4.321 * SR),)
    assert odd.info["windows"] == 3
    alone, again, other = (
        ok(engine.render([track(seed, 4.0, **SHORT)], lambda: None))[0] for seed in (3, 3, 4)
    )
    assert np.array_equal(alone.audio, again.audio)
    assert not np.allclose(alone.audio, other.audio)
    requests = [track(9, 4.0, "jazz guitar song", **SHORT), track(3, 4.0, **SHORT)]
    mates = ok(engine.render(requests, lambda: None))
    assert mates[1].info["batch"] == 2
    np.testing.assert_allclose(mates[1].audio, alone.audio, atol=1e-5)
    # An out-of-memory split replays every window of each half: the same tracks again.
    _oom_when(engine, monkeypatch, limit=1)
    split = ok(engine.render(requests, lambda: None))
    assert [result.info["batch"] for result in split] == [1, 1]
    for before, after in zip(mates, split, strict=True):
        np.testing.assert_allclose(after.audio, before.audio, atol=1e-5)


def test_lengths_are_exact_for_odd_durations(engine: MusicGenEngine) -> None:
    (result,) = ok(engine.render([track(1, 1.23456)], lambda: None))
    assert result.audio.shape == (round(1.23456 * SR),)


def test_same_seed_same_audio_other_seed_other_audio(engine: MusicGenEngine) -> None:
    first, again, other = (ok(engine.render([track(seed)], lambda: None))[0] for seed in (7, 7, 8))
    assert np.array_equal(first.audio, again.audio)
    assert not np.allclose(first.audio, other.audio)


def test_track_does_not_depend_on_its_batch_mates(engine: MusicGenEngine) -> None:
    alone = ok(engine.render([track(3)], lambda: None))[0]
    mates = ok(engine.render([track(9, prompt="jazz guitar song"), track(3)], lambda: None))
    # Same tokens; the codec's batched convolutions may round the last bit differently.
    np.testing.assert_allclose(mates[1].audio, alone.audio, atol=1e-5)


def test_mixed_lengths_and_params_are_grouped(engine: MusicGenEngine) -> None:
    calls = engine.generate_calls
    requests = [
        track(1, 1.0),
        track(2, 0.5),
        track(3, 1.0),
        track(4, 1.0, guidance_scale=1.0),
        track(5, 1.0, lyrics_style="ignored key"),
    ]
    results = ok(engine.render(requests, lambda: None))
    lengths = [result.audio.shape[0] for result in results]
    assert lengths == [SR, SR // 2, SR, SR, SR]
    # (1 s, defaults) x3 in batches of 2 -> 2 calls; (0.5 s) -> 1; (1 s, no guidance) -> 1
    assert engine.generate_calls == calls + 4
    assert [result.info["batch"] for result in results] == [2, 1, 2, 1, 1]


def test_top_k_1_sampling_is_greedy(engine: MusicGenEngine) -> None:
    greedy = ok(engine.render([track(1, do_sample=False)], lambda: None))[0]
    top1 = ok(engine.render([track(2, top_k=1, temperature=0.7)], lambda: None))[0]
    assert np.array_equal(greedy.audio, top1.audio)


def test_lyrics_are_ignored_and_said_so(engine: MusicGenEngine) -> None:
    request = RenderRequest(
        key="lyrics", kind="music", text="song", seed=1, duration_s=0.5, lyrics="la la la"
    )
    (result,) = ok(engine.render([request], lambda: None))
    assert result.info["lyrics_ignored"] is True


def test_bad_params_fail_only_their_job(engine: MusicGenEngine) -> None:
    results = engine.render([track(1, extend_stride=45), track(2), track(3, 0.0)], lambda: None)
    assert isinstance(results[0], EngineError)
    assert "extend_stride" in str(results[0])
    assert not results[0].retryable
    assert isinstance(results[1], RenderResult)
    assert isinstance(results[2], EngineError)


def _oom_when(engine: MusicGenEngine, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Make generate() run out of memory for batches larger than `limit`."""
    real = engine.model.generate

    def generate(**kwargs: Any) -> Any:
        if kwargs["input_ids"].shape[0] > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(**kwargs)

    monkeypatch.setattr(engine.model, "generate", generate)


def test_out_of_memory_halves_the_batch(
    engine: MusicGenEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = [track(1), track(2, prompt="rock")]
    together = ok(engine.render(requests, lambda: None))
    _oom_when(engine, monkeypatch, limit=1)
    split = ok(engine.render(requests, lambda: None))
    assert [result.info["batch"] for result in split] == [1, 1]
    for before, after in zip(together, split, strict=True):
        np.testing.assert_allclose(after.audio, before.audio, atol=1e-5)


def test_out_of_memory_alone_sets_that_job_aside_as_transient(
    engine: MusicGenEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _oom_when(engine, monkeypatch, limit=0)
    results = engine.render([track(1), track(2)], lambda: None)
    for result in results:
        assert isinstance(result, EngineError)
        assert "out of memory" in str(result)
        assert result.transient  # the device's state, not the track's: never charged


GIB = 2**30


GB = 10**9

# The real checkpoints' decoder shapes (facebook/musicgen-small, -medium, -large config.json)
# and the KV cache one track's 30 s window with guidance was measured to take there, in fp16.
REAL_DECODERS = {
    "small": (dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16), 0.30),
    "medium": (dict(num_hidden_layers=48, hidden_size=1536, num_attention_heads=24), 0.89),
    "large": (dict(num_hidden_layers=48, hidden_size=2048, num_attention_heads=32), 1.18),
}


def real_configs(name: str) -> tuple[Any, Any]:
    """Configs only, no weights: all the memory model reads."""
    from transformers import EncodecConfig, MusicgenDecoderConfig

    decoder = MusicgenDecoderConfig(**REAL_DECODERS[name][0], num_codebooks=4)
    codec = EncodecConfig(sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], num_filters=64)
    return decoder, codec


@pytest.mark.parametrize("name", sorted(REAL_DECODERS))
def test_kv_cache_model_matches_the_measured_figures(name: str) -> None:
    decoder, codec = real_configs(name)
    measured = REAL_DECODERS[name][1] * GB
    kv = kv_cache_bytes(decoder, codec, dtype_bytes=2)
    assert abs(kv - measured) < 0.1 * measured
    assert kv_cache_bytes(decoder, codec, dtype_bytes=2, guidance=False) == kv // 2
    # The rest (EnCodec's decode, cross-attention, logits) is under 0.6 GB whatever the size:
    # it used to be 1.5x the cache on top, which made the model 2-3x what a track needs.
    assert kv < track_bytes(decoder, codec, dtype_bytes=2) < kv + 0.6 * GB


def test_memory_model_for_musicgen_small_in_float16() -> None:
    """About 0.77 GiB per track for a 30 s window with guidance, so a 24 GB card with 20 GiB
    free takes 20 and an H100 the cap."""
    decoder, codec = real_configs("small")
    per_track = track_bytes(decoder, codec, dtype_bytes=2)
    assert 0.7 * GIB < per_track < 0.85 * GIB
    assert track_bytes(decoder, codec, dtype_bytes=4) == 2 * per_track
    assert batch_that_fits(20 * GIB, per_track, ceiling=32) == 20
    assert batch_that_fits(76 * GIB, per_track, ceiling=32) == 32
    assert batch_that_fits(GIB // 2, per_track, ceiling=32) == 1  # never zero: OOM halves


def test_auto_batch_reads_free_memory_on_cuda(
    engine: MusicGenEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No GPU here: torch.cuda.mem_get_info is faked, the arithmetic and dtype are real."""
    asked: list[torch.device] = []

    def mem_get_info(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return (free, 2 * free)

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    config = (engine.model.decoder.config, engine.model.audio_encoder.config)
    per_track = track_bytes(*config, dtype_bytes=4)  # the tiny model is float32
    free = int(5.5 * per_track / 0.8)
    assert auto_batch_limit(engine.model, torch.device("cuda:0"), ceiling=32) == 5
    assert asked == [torch.device("cuda:0")]
    assert auto_batch_limit(engine.model, torch.device("cuda:0"), ceiling=3) == 3


class FakeCuda:
    """torch.cuda's memory calls for a GPU that is not here: free memory read from a script, and
    a peak that the (also faked) generate() raises by `peak_per_track` for each track it runs."""

    def __init__(self) -> None:
        self.free = [6250]  # one reading per mem_get_info call; the last one repeats
        self.peak_per_track = 1000
        self.allocated = 10_000  # the weights, say
        self.peak = self.allocated
        self.resets = 0

    def mem_get_info(self, device: torch.device) -> tuple[int, int]:
        return (self.free.pop(0) if len(self.free) > 1 else self.free[0], 10**12)

    def reset_peak_memory_stats(self, device: torch.device) -> None:
        self.resets += 1
        self.peak = self.allocated

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch.cuda, "mem_get_info", self.mem_get_info)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: self.allocated)
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: self.allocated)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: self.peak)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", self.reset_peak_memory_stats)


@dataclass
class Sized:
    engine: MusicGenEngine
    sizer: AutoBatch
    cuda: FakeCuda
    batches: list[int]  # tracks per generate() call


@pytest.fixture
def sized(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sized]:
    """An auto-batched engine on the CPU handed a sizer for cuda:0, with torch.cuda's memory
    calls faked (no GPU here) and a generate() that returns silence at once: these tests are
    about batch sizes, and 30 s windows (the ones a sizer learns from) would take the tiny model
    seconds each. The sizer's figures are round: 1000 per track modelled, a 100 floor."""
    spec = EngineSpec(
        kind="music", engine="musicgen", model=str(tiny_folder), batch_size=8, batch_auto=True
    )
    engine = load_engine(spec, "cpu")
    assert isinstance(engine, MusicGenEngine)
    engine.sizer = AutoBatch(torch.device("cuda:0"), ceiling=8, modelled=1000, floor=100)
    cuda = FakeCuda()
    cuda.install(monkeypatch)
    batches: list[int] = []

    def generate(**kwargs: Any) -> Any:
        rows = kwargs["input_ids"].shape[0]
        batches.append(rows)
        cuda.peak = max(cuda.peak, cuda.allocated + rows * cuda.peak_per_track)
        prompt = kwargs["decoder_input_ids"].shape[-1] if "decoder_input_ids" in kwargs else 0
        new = kwargs["generation_config"].max_new_tokens - engine.delay
        return torch.zeros(rows, engine.channels, (prompt + new) * engine.hop)

    monkeypatch.setattr(engine.model, "generate", generate)
    yield Sized(engine, engine.sizer, cuda, batches)
    engine.close()


def test_free_memory_dropping_mid_run_shrinks_the_next_batch(sized: Sized) -> None:
    # 0.8 x 6250 = 5000 usable: 5 tracks of the modelled 1000; then a tenant leaves 2500: 2.
    sized.cuda.free = [6250, 2500]
    results = ok(sized.engine.render([track(seed, 1.0) for seed in range(10)], lambda: None))
    assert sized.batches == [5, 2, 2, 1]
    assert [result.info["batch"] for result in results] == [5] * 5 + [2] * 4 + [1]
    # 1 s tracks are not a full window: they teach the sizer nothing, the model held.
    assert sized.sizer.measured is None and sized.cuda.resets == 0
    sized.cuda.free = [0]
    (alone,) = ok(sized.engine.render([track(1, 1.0)], lambda: None))
    assert alone.info["batch"] == 1  # never zero: out of memory halves, then sets aside


def test_a_measured_peak_under_the_model_lets_batches_grow_to_the_ceiling(sized: Sized) -> None:
    # 5000 usable: 5 tracks by the model; each is measured at 250 (x 1.1 = 275): 18, capped at 8.
    sized.cuda.peak_per_track = 250
    ok(sized.engine.render([track(seed, 30.0) for seed in range(20)], lambda: None))
    assert sized.batches == [5, 8, 7]
    assert sized.sizer.measured == 250 and sized.cuda.resets == 3
    assert sized.sizer.per_track() == 275
    # What the worker now reports: the coordinator's next calls carry up to 8 tracks.
    assert sized.engine.batch_limit == 8
    # A peak under the KV cache alone is not believed: the floor (100) holds.
    sized.cuda.peak_per_track = 10
    ok(sized.engine.render([track(seed, 30.0) for seed in range(2)], lambda: None))
    assert sized.sizer.measured == 10 and sized.sizer.per_track() == 100


def test_a_measured_peak_over_the_model_shrinks_the_next_batch(sized: Sized) -> None:
    sized.cuda.peak_per_track = 2000  # x 1.1 = 2200: 5000 // 2200 = 2
    ok(sized.engine.render([track(seed, 30.0) for seed in range(9)], lambda: None))
    assert sized.batches == [5, 2, 2]


def test_available_memory_counts_what_the_allocator_caches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faked torch.cuda (no GPU here): blocks an earlier batch left in torch's cache are ours."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1000, 10**6))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 700)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 500)
    assert available_bytes(torch.device("cuda:0")) == 1200


def test_auto_batch_on_a_cpu_is_small_and_splits_the_call(tiny_folder: Path) -> None:
    spec = EngineSpec(
        kind="music", engine="musicgen", model=str(tiny_folder), batch_size=32, batch_auto=True
    )
    auto = load_engine(spec, "cpu")
    assert isinstance(auto, MusicGenEngine) and auto.batch_limit == CPU_AUTO_BATCH == 4
    assert auto.sizer is None  # a CPU's batches are never re-measured
    results = ok(auto.render([track(seed, 0.2) for seed in range(6)], lambda: None))
    assert auto.generate_calls == 2
    assert [result.info["batch"] for result in results] == [4] * 4 + [2] * 2
    auto.close()


def test_missing_weights_say_how_to_provide_them(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    spec = EngineSpec(kind="music", engine="musicgen", model=str(missing))
    with pytest.raises(EngineUnavailable) as caught:
        load_engine(spec, "cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert str(missing) in message
    assert "Hugging Face cache" in message
    assert "model:" in message
    assert "--profile offline" in message


def test_window_schedule_matches_audiocraft() -> None:
    # 50 Hz: 30 s window = 1500 frames, stride 18 s = 900 frames, prompt 12 s = 600 frames
    assert plan_windows(1000, 1500, 900) == [Window(0, 1000)]
    assert plan_windows(1500, 1500, 900) == [Window(0, 1500)]
    assert plan_windows(2000, 1500, 900) == [Window(0, 1500), Window(600, 500)]
    assert plan_windows(3300, 1500, 900) == [Window(0, 1500), Window(600, 900), Window(600, 900)]


@pytest.fixture(scope="module")
def stereo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MusicGenEngine]:
    folder = build_tiny_musicgen(tmp_path_factory.mktemp("tiny-stereo"), stereo=True)
    spec = EngineSpec(kind="music", engine="musicgen", model=str(folder), batch_size=2)
    loaded = load_engine(spec, "cpu")
    assert isinstance(loaded, MusicGenEngine)
    yield loaded
    loaded.close()


def test_stereo_checkpoints_give_samples_by_channels(stereo: MusicGenEngine) -> None:
    (result,) = ok(stereo.render([track(1, 0.5)], lambda: None))
    assert result.audio.shape == (SR // 2, 2)
    assert result.audio.flags.c_contiguous


@pytest.mark.usefixtures("short_windows")
def test_stereo_windows_continue_from_interleaved_left_right_codes(
    stereo: MusicGenEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stereo checkpoints interleave left and right codebooks (8 = L0 R0 L1 R1 ...); generate()
    decodes the even ones, then the odd ones: the prompt must be woven back the same way."""
    calls = spy(stereo.model, monkeypatch)
    requests = [track(5, 4.0, **SHORT), track(6, 4.0, "fast rock drums", **SHORT)]
    results = ok(stereo.render(requests, lambda: None))
    for result in results:
        assert result.audio.shape == (4 * SR, 2)
        assert result.info["windows"] == 3
    assert calls.encodes == []
    assert len(calls.generate) == 3  # both tracks together, window by window
    assert len(calls.decoded) == 2 * 3  # left and right per window
    first, *continued = calls.generate
    assert "decoder_input_ids" not in first
    for window, kwargs in enumerate(continued):
        left, right = (
            c[0, :, :, -PROMPT_FRAMES:] for c in calls.decoded[2 * window : 2 * window + 2]
        )
        prompt = kwargs["decoder_input_ids"]
        assert prompt.shape == (2 * 8, PROMPT_FRAMES)
        by_track = prompt.reshape(2, 8, PROMPT_FRAMES)
        assert torch.equal(by_track[:, ::2], left)
        assert torch.equal(by_track[:, 1::2], right)
        next_left, next_right = calls.decoded[2 * window + 2 : 2 * window + 4]
        assert torch.equal(next_left[0, :, :, :PROMPT_FRAMES], left)
        assert torch.equal(next_right[0, :, :, :PROMPT_FRAMES], right)
    again = ok(stereo.render(requests[1:], lambda: None))[0]
    np.testing.assert_allclose(again.audio, results[1].audio, atol=1e-5)


@pytest.mark.parametrize("guidance", [3.0, 1.0])
def test_greedy_matches_transformers_own_generate(engine: MusicGenEngine, guidance: float) -> None:
    """Our sampler hands generate() one-hot scores, before its own guidance step: the result must
    be exactly what transformers makes by itself."""
    prompts = ["calm piano", "fast rock drums"]
    requests = [
        track(i, 1.0, p, do_sample=False, guidance_scale=guidance) for i, p in enumerate(prompts)
    ]
    ours = ok(engine.render(requests, lambda: None))
    inputs = engine.processor(text=prompts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        theirs = engine.model.generate(
            **inputs, do_sample=False, guidance_scale=guidance, max_new_tokens=50 + 3
        )
    for row, result in enumerate(ours):
        np.testing.assert_array_equal(result.audio, np.clip(theirs[row, 0].numpy(), -1, 1))
