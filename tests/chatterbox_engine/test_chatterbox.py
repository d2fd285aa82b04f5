"""The chatterbox engine on the REAL chatterbox-tts 0.1.7 code with tiny random weights.

Runs in the separate environment (`bash .ci/chatterbox-env`, then
`.venv-chatterbox/bin/pytest tests/chatterbox_engine`); anywhere without the package it skips.
Random weights never sample the stop token, so every call is capped to a few speech tokens
(`tiny_chatterbox.cap_speech_tokens`); durations are then a handful of 40 ms frames, and the QA
bounds below are set around them.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported, which reads it once

import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("chatterbox.tts", reason="needs the chatterbox env: bash .ci/chatterbox-env")

import tiny_chatterbox as tiny
import torch
from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS

from songbatch.engines import chatterbox as cb
from songbatch.engines.base import EngineSpec, RenderRequest, RenderResult
from songbatch.errors import EngineError, EngineUnavailable

# A normal tiny render (12 tokens) lasts about 0.4 s against an expected 1.0 s (the floor for
# short texts): these bounds pass it and still fail a 3-token render (about 0.08 s).
LOOSE_QA = {"qa_min_ratio": 0.25, "qa_max_ratio": 5.0, "qa_retries": 2}
TEXT = "Hello there."


def spec(**params: Any) -> EngineSpec:
    return EngineSpec(
        kind="speech",
        engine="chatterbox",
        model="ResembleAI/chatterbox",
        params={"variant": "english", **LOOSE_QA, "max_new_tokens": tiny.DEFAULT_TOKENS, **params},
        max_chars=300,
    )


def request(voice: Path | None, *, seed: int = 1, text: str = TEXT, **params: Any) -> RenderRequest:
    return RenderRequest(
        key=f"k{seed}",
        kind="speech",
        text=text,
        seed=seed,
        params={"language": "en-GB", **params},
        voice_path=None if voice is None else str(voice),
    )


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # One intra-op thread: with two on a 2-core machine that is busy with anything else, OpenMP's
    # spinning threads wait on each other and a 3 s render took 100 s (seen here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers' deprecation notices while S3Gen is built
        model = tiny.build_tiny_model(tmp_path_factory.mktemp("tiny"))
    yield model
    torch.set_num_threads(threads)


@pytest.fixture
def model(built: Any) -> Iterator[Any]:
    """The module's model, with whatever a test or an engine changed on it put back."""
    saved = {name: getattr(built, name) for name in ("watermarker", "conds")}
    inference, vocoder = built.t3.inference, built.s3gen.inference
    caps = tiny._BATCH_CAPS.get(built.t3)
    prepares = Counter()
    real_prepare = built.prepare_conditionals

    def counted(*args: Any, **kwargs: Any) -> Any:
        prepares()
        return real_prepare(*args, **kwargs)

    built.prepare_conditionals = counted
    built.prepares = prepares
    yield built
    for name, value in saved.items():
        setattr(built, name, value)
    built.t3.inference, built.s3gen.inference = inference, vocoder
    if caps is not None:
        tiny._BATCH_CAPS[built.t3] = caps
    del built.prepare_conditionals, built.prepares


@pytest.fixture
def voice(tmp_path: Path) -> Path:
    voices = tmp_path / "voices"
    voices.mkdir()
    return tiny.write_voice(voices / ("ab" * 32))  # named like <state>/voices/<sha256>


def render_one(engine: cb.ChatterboxEngine, req: RenderRequest) -> RenderResult | EngineError:
    [result] = engine.render([req], Counter())
    return result


def ok(result: RenderResult | EngineError) -> RenderResult:
    assert isinstance(result, RenderResult), result
    return result


def test_renders_a_chunk_with_a_voice_reference(
    model: Any, voice: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    engine = cb.ChatterboxEngine.from_model(model, spec())
    progress = Counter()
    capfd.readouterr()
    [result] = engine.render([request(voice, seed=3)], progress)
    assert capfd.readouterr() == ("", ""), "the library printed"
    result = ok(result)
    assert result.sample_rate == 24000 == engine.sample_rate
    assert result.audio.dtype == np.float32 and result.audio.ndim == 1
    assert 0.2 < result.duration_s < 1.0
    assert np.abs(result.audio).max() <= 1.0 and np.abs(result.audio).max() > 0
    assert result.info["variant"] == "english"
    assert result.info["qa_renders"] == 1 and result.info["seed_used"] == 3
    assert result.info["qa_ratio"] == pytest.approx(result.duration_s / 1.0, abs=1e-3)
    assert result.info["watermarked"] is True
    assert progress.calls >= 2


def test_conditionals_are_prepared_once_then_cached_on_disk(model: Any, voice: Path) -> None:
    engine = cb.ChatterboxEngine.from_model(model, spec())
    ok(render_one(engine, request(voice, seed=1)))
    ok(render_one(engine, request(voice, seed=2)))
    cache = voice.with_name(f"{voice.name}.english.conds.pt")
    assert cache.is_file() and model.prepares.calls == 1
    assert sorted(p.name for p in voice.parent.iterdir()) == [voice.name, cache.name]
    # Another worker (a second engine) loads the file instead of analysing the voice again.
    again = cb.ChatterboxEngine.from_model(model, spec())
    first = ok(render_one(again, request(voice, seed=1)))
    assert model.prepares.calls == 1
    # ... and renders exactly what the engine that prepared it rendered for the same seed.
    fresh = cb.ChatterboxEngine.from_model(model, spec())
    cache.unlink()
    assert np.array_equal(ok(render_one(fresh, request(voice, seed=1))).audio, first.audio)
    assert model.prepares.calls == 2


def test_a_seed_makes_a_render_reproducible(model: Any, voice: Path) -> None:
    engine = cb.ChatterboxEngine.from_model(model, spec())
    a = ok(render_one(engine, request(voice, seed=11))).audio
    b = ok(render_one(engine, request(voice, seed=11))).audio
    c = ok(render_one(engine, request(voice, seed=12))).audio
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_qa_fails_after_every_seed_with_the_ratio(model: Any, voice: Path) -> None:
    calls = Counter()

    def counted_cap() -> int:
        calls()
        return tiny.DEFAULT_TOKENS

    tiny.cap_speech_tokens(model, counted_cap)
    engine = cb.ChatterboxEngine.from_model(model, spec(qa_min_ratio=0.0, qa_max_ratio=0.01))
    result = render_one(engine, request(voice, seed=5))
    assert isinstance(result, EngineError) and not result.retryable
    assert calls.calls == 3
    message = str(result)
    assert message.startswith("QA: duration ratio 0.")
    assert "outside 0.0-0.01 after 3 seeds" in message


def test_qa_renders_again_with_another_seed(model: Any, voice: Path) -> None:
    tiny.cap_speech_tokens(model, tiny.token_schedule([3]))  # the first render is truncated
    engine = cb.ChatterboxEngine.from_model(model, spec())
    result = ok(render_one(engine, request(voice, seed=7)))
    assert result.info["qa_renders"] == 2
    assert result.info["seed_used"] == 7 + cb.SEED_STRIDE
    assert LOOSE_QA["qa_min_ratio"] <= result.info["qa_ratio"] <= LOOSE_QA["qa_max_ratio"]


def test_watermark_is_on_by_default_and_can_be_switched_off(model: Any, voice: Path) -> None:
    marked = cb.ChatterboxEngine.from_model(model, spec())
    with_mark = ok(render_one(marked, request(voice, seed=9)))
    plain = cb.ChatterboxEngine.from_model(model, spec(watermark=False))
    without = ok(render_one(plain, request(voice, seed=9)))
    assert with_mark.info["watermarked"] is True and without.info["watermarked"] is False
    assert with_mark.audio.shape == without.audio.shape
    assert not np.allclose(with_mark.audio, without.audio)


def test_the_watermark_runs_where_the_audio_is_first_read(model: Any, voice: Path) -> None:
    """In a worker that is the writer thread: the device renders the next batch meanwhile."""
    import threading

    engine = cb.ChatterboxEngine.from_model(model, spec())
    perth_watermarker = model.perth_watermarker
    threads: list[str] = []
    real = perth_watermarker.apply_watermark

    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    perth_watermarker.apply_watermark = recorded
    try:
        result = ok(render_one(engine, request(voice, seed=9)))
        assert threads == [] and result.duration_s > 0
        writer = threading.Thread(target=lambda: result.audio, name="writer")
        writer.start()
        writer.join()
    finally:
        del perth_watermarker.apply_watermark
    assert threads == ["writer"]
    plain = ok(
        render_one(
            cb.ChatterboxEngine.from_model(model, spec(watermark=False)), request(voice, seed=9)
        )
    )
    assert np.array_equal(
        result.audio, real(plain.audio, sample_rate=engine.sample_rate).clip(-1, 1)
    )


def test_tf32_is_switched_on_for_a_gpu_worker_unless_the_profile_says_not() -> None:
    """No GPU here: the switch is process-wide state torch reports on any build."""
    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        cb.use_tf32("cpu", True)
        assert torch.get_float32_matmul_precision() == "highest"
        cb.use_tf32("cuda", False)
        assert torch.get_float32_matmul_precision() == "highest"
        cb.use_tf32("cuda", True)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(saved)


def test_bf16_autocast_wraps_only_the_token_loop(model: Any, voice: Path) -> None:
    """On a GPU `auto` means this; the CPU's autocast runs the same code path here."""
    engine = cb.ChatterboxEngine.from_model(model, spec(dtype="bfloat16"))
    assert engine.autocast_dtype is torch.bfloat16
    result = ok(render_one(engine, request(voice, seed=2)))
    assert result.audio.dtype == np.float32
    assert next(model.s3gen.parameters()).dtype == torch.float32
    assert cb.ChatterboxEngine.from_model(model, spec()).autocast_dtype is None  # auto on a CPU


def test_one_bad_request_fails_alone(model: Any, voice: Path, tmp_path: Path) -> None:
    engine = cb.ChatterboxEngine.from_model(model, spec())
    requests = [
        request(tmp_path / "missing-voice", seed=1),
        request(voice, seed=1, language="de-DE"),
        request(voice, seed=1, cfg_weight=0.0),  # 0.1.7's English path breaks on exactly 0
        request(None, seed=1),  # no voice, and the tiny checkpoint has no built-in one
        request(voice, seed=1, text="* * *"),
    ]
    missing, german, cfg_zero, no_voice, scene_break = engine.render(requests, Counter())
    assert isinstance(missing, EngineError) and "missing" in str(missing)
    assert isinstance(german, EngineError) and "variant: multilingual" in str(german)
    assert not german.retryable
    assert ok(cfg_zero).info["qa_renders"] >= 1
    assert isinstance(no_voice, EngineError) and "built-in voice" in str(no_voice)
    assert ok(scene_break).info["silent"] is True


# Different lengths (so rows are padded), each short enough that 12 tokens pass loose QA.
BATCH_TEXTS = ["Hello there.", "Sea and gulls.", "Hi."]


def test_english_chunks_of_one_call_sample_their_tokens_together(model: Any, voice: Path) -> None:
    """One batched token loop for the call; each chunk comes out as long as it does alone
    (the same tokens: the loop is the library's, row by row) and its audio follows its seed,
    whatever its batch-mates."""
    engine = cb.ChatterboxEngine.from_model(model, spec())
    requests = [request(voice, seed=20 + i, text=text) for i, text in enumerate(BATCH_TEXTS)]
    together = [ok(r) for r in engine.render(requests, Counter())]
    assert engine.token_loops == 1
    # Alone (a retry, a resumed run) a chunk takes the same path and sounds the same.
    alone = [ok(render_one(engine, req)) for req in requests]
    assert engine.token_loops == 4
    for one, batched in zip(alone, together, strict=True):
        assert np.array_equal(one.audio, batched.audio)
    assert [r.info["seed_used"] for r in together] == [20, 21, 22]
    assert [r.info["batch"] for r in together] == [3, 3, 3]
    assert [r.info["batch"] for r in alone] == [1, 1, 1]
    others = [request(voice, seed=99, text="Other words."), requests[2], requests[0]]
    _, third, first = (ok(r) for r in engine.render(others, Counter()))
    assert np.array_equal(first.audio, together[0].audio)
    assert np.array_equal(third.audio, together[2].audio)


def test_the_batched_loop_samples_exactly_the_librarys_tokens(model: Any, voice: Path) -> None:
    """Row by row, padded among rows of other lengths, the loop picks the same tokens as the
    library's own `T3.inference` for the same seed."""
    from chatterbox.models.t3 import T3
    from torch.nn import functional as F

    from songbatch.engines import chatterbox_batch as batch

    with cb.quiet():
        model.prepare_conditionals(str(voice))
    cond = model.conds.t3

    def library(text: str, seed: int) -> list[int]:
        tokens = model.tokenizer.text_to_tokens(text)
        tokens = F.pad(F.pad(torch.cat([tokens, tokens]), (1, 0), value=255), (0, 1), value=0)
        cb.seed_everything(seed)
        with cb.quiet(), torch.inference_mode():
            out = T3.inference(
                model.t3, t3_cond=cond, text_tokens=tokens, max_new_tokens=12, top_p=1.0
            )  # the values ChatterboxTTS.generate passes
        return [int(t) for t in out[0]]

    rows = [
        batch.Row(cond, model.tokenizer.text_to_tokens(text), seed, max_valid_tokens=10**6)
        for seed, text in enumerate(BATCH_TEXTS, start=40)
    ]
    sampled = batch.sample_speech_tokens(
        model.t3, rows, batch.Sampling(), max_new_tokens=12, progress=Counter()
    )
    for row, text, seed in zip(sampled, BATCH_TEXTS, range(40, 43), strict=True):
        assert row.tokens.tolist() == library(text, seed)
        assert not row.stopped and not row.run_on  # random weights never stop: the cap did
    # Sampling hides small differences, so the logits are compared too: a row padded among
    # longer ones scores the next token as it does alone.
    together = batch.first_logits(model.t3, rows, batch.Sampling())
    for index, row in enumerate(rows):
        alone = batch.first_logits(model.t3, [row], batch.Sampling())
        torch.testing.assert_close(together[2 * index : 2 * index + 2], alone, atol=1e-4, rtol=0)


def test_batched_chunks_that_fail_qa_go_round_again_then_fail(model: Any, voice: Path) -> None:
    """A limit of 0.01 x the expected length: every row is a run-on after a few tokens, stopped
    early without S3Gen, and tried with each of its seeds in one loop per round."""
    engine = cb.ChatterboxEngine.from_model(model, spec(qa_min_ratio=0.0, qa_max_ratio=0.01))
    requests = [request(voice, seed=5 + i, text=text) for i, text in enumerate(BATCH_TEXTS)]
    results = engine.render(requests, Counter())
    assert engine.token_loops == 3  # the first seed, then two more (qa_retries 2)
    for result in results:
        assert isinstance(result, EngineError) and not result.retryable
        assert "outside 0.0-0.01 after 3 seeds" in str(result)


def test_out_of_memory_halves_a_batched_loop_then_fails_the_chunk_alone(
    model: Any, voice: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No GPU here: the loop raises CUDA's out-of-memory error above a number of rows."""
    from songbatch.engines import chatterbox_batch as batch

    real = batch.sample_speech_tokens
    fits = {"rows": 1}

    def sample(t3: Any, rows: Any, *args: Any, **kwargs: Any) -> Any:
        if len(rows) > fits["rows"]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(t3, rows, *args, **kwargs)

    monkeypatch.setattr(batch, "sample_speech_tokens", sample)
    engine = cb.ChatterboxEngine.from_model(model, spec())
    requests = [request(voice, seed=30 + i, text=text) for i, text in enumerate(BATCH_TEXTS)]
    results = [ok(r) for r in engine.render(requests, Counter())]
    assert [r.info["batch"] for r in results] == [1, 1, 1]
    fits["rows"] = 0  # not even one chunk fits: each fails alone, and may be tried again
    for result in engine.render(requests, Counter()):
        assert isinstance(result, EngineError) and result.retryable
        assert "out of GPU memory" in str(result)


def test_batched_chunks_with_other_sampling_take_their_own_loop(model: Any, voice: Path) -> None:
    engine = cb.ChatterboxEngine.from_model(model, spec())
    requests = [
        request(voice, seed=1, text=BATCH_TEXTS[0]),
        request(voice, seed=2, text=BATCH_TEXTS[1], temperature=0.5),
        request(voice, seed=3, text=BATCH_TEXTS[2], exaggeration=0.9),  # a per-row setting
    ]
    results = [ok(r) for r in engine.render(requests, Counter())]
    assert engine.token_loops == 2
    assert all(r.info["qa_renders"] == 1 for r in results)


def recording_generate(model: Any) -> list[dict[str, Any]]:
    """Record the keyword arguments of each call to the model's `generate`."""
    calls: list[dict[str, Any]] = []
    inner = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return inner(*args, **kwargs)

    model.generate = generate
    return calls


def test_turbo_renders_without_the_params_it_does_not_take(
    voice: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tiny.build_tiny_turbo()
    engine = cb.ChatterboxEngine.from_model(model, spec(variant="turbo", temperature=0.7))
    calls = recording_generate(model)  # after: the engine reads generate's signature
    turbo_voice = tiny.write_voice(voice.with_name("cd" * 32), seconds=6.0)  # Turbo wants > 5 s
    capfd.readouterr()
    params = {"exaggeration": 0.8, "cfg_weight": 0.3, "min_p": 0.1, "top_k": 50}
    result = ok(render_one(engine, request(turbo_voice, seed=2, **params)))
    assert capfd.readouterr() == ("", ""), "the library printed (or warned about CFG)"
    assert result.info["variant"] == "turbo" and result.duration_s > 0
    assert calls == [{"temperature": 0.7, "top_k": 50}]


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory: pytest.TempPathFactory, built: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiny.build_tiny_multilingual(tmp_path_factory.mktemp("mtl"))


def test_multilingual_renders_with_the_manifest_language(multilingual: Any, voice: Path) -> None:
    model = multilingual
    engine = cb.ChatterboxEngine.from_model(model, spec(variant="multilingual"))
    calls = recording_generate(model)
    result = ok(render_one(engine, request(voice, seed=3, text="Bonjour.", language="fr-FR")))
    assert result.info["variant"] == "multilingual" and result.duration_s > 0
    assert calls[0]["language_id"] == "fr"
    # Random weights sample padding ids past the speech vocabulary; 0.1.7's Multilingual path
    # hands them to S3Gen, which fails on them, unless the engine drops them (it does).
    ok(render_one(engine, request(voice, seed=4, text="Hallo.", language="de")))


def test_language_ids_for_the_multilingual_variant() -> None:
    assert cb.language_id("pt-BR") == "pt"
    assert cb.language_id("zh-Hant-TW") == "zh"
    assert cb.language_id("nb-NO") == "no"
    assert cb.language_id(None) == "en"
    with pytest.raises(EngineError, match="cannot speak language 'tlh'"):
        cb.language_id("tlh")


def test_unknown_variant_and_missing_local_folder_are_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="variant 'huge' is unknown"):
        cb.load(spec(variant="huge"), "cpu")
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(EngineUnavailable, match=r"no-such-checkpoint.*does not exist"):
        cb.load(dataclasses.replace(spec(), model=str(missing)), "cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineUnavailable, match=r"lacks ve\.safetensors, t3_cfg\.safetensors"):
        cb.load(dataclasses.replace(spec(), model=str(empty)), "cpu")


def test_weights_not_cached_and_no_network_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(EngineUnavailable) as caught:
        cb.load(spec(), "cpu")
    message = str(caught.value)
    assert "ResembleAI/chatterbox" in message and "hf download" in message
    assert "--profile offline|replicate" in message


def test_load_runs_the_librarys_from_local(
    model: Any, voice: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint folder in the layout from_local reads, holding the tiny model's weights and
    a built-in voice; from_local's T3() gets the tiny Llama under the default config's name."""
    folder = tiny.save_checkpoint(model, tmp_path / "ckpt", voice)
    monkeypatch.setitem(LLAMA_CONFIGS, "Llama_520M", LLAMA_CONFIGS[tiny.TINY_LLAMA])

    engine = cb.load(dataclasses.replace(spec(), model=str(folder)), "cpu")
    assert torch.equal(engine.model.t3.speech_emb.weight, model.t3.speech_emb.weight), (
        "from_local did not load the checkpoint"
    )
    tiny.cap_speech_tokens(engine.model, lambda: tiny.DEFAULT_TOKENS)
    result = ok(render_one(engine, request(None, seed=4)))  # the checkpoint's built-in voice
    assert result.info["voice"] == "builtin"
    engine.close()


# -- first contact with real weights and long-lived workers (issue 11)


def test_a_render_that_samples_no_speech_tokens_fails_qa_and_takes_the_next_seed(
    model: Any, voice: Path
) -> None:
    """Only padding ids (past the speech vocabulary) in the first render: nothing S3Gen can
    speak. That is the sampling's fault, so the next seed renders it, in the same attempt."""
    handle = force_speech_head(model.t3, token=7000, steps=tiny.DEFAULT_TOKENS)
    try:
        engine = cb.ChatterboxEngine.from_model(model, spec())
        result = ok(render_one(engine, request(voice, seed=8)))
    finally:
        handle.remove()
    assert result.info["qa_renders"] == 2
    assert result.info["seed_used"] == 8 + cb.SEED_STRIDE
    assert result.duration_s > 0
    # With every seed sampling nothing, the chunk fails QA saying so, not S3Gen's crash.
    handle = force_speech_head(model.t3, token=7000, steps=10**6)
    try:
        engine = cb.ChatterboxEngine.from_model(model, spec(qa_min_ratio=0.0))
        failed = render_one(engine, request(voice, seed=8))
    finally:
        handle.remove()
    assert isinstance(failed, EngineError) and not failed.retryable
    assert "sampled no speech tokens after 3 seeds" in str(failed)


def force_speech_head(t3: Any, *, token: int, steps: int) -> Any:
    """For its next `steps` forward passes T3's speech head scores only `token` (random weights
    cannot be steered to an output, so the head's output is overridden by a forward hook, seen
    by the library's loop and by ours alike)."""
    passes = [0]

    def hook(module: Any, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        passes[0] += 1
        if passes[0] > steps:
            return None
        forced = torch.full_like(output, -1e4)
        forced[..., token] = 1e4
        return forced

    return t3.speech_head.register_forward_hook(hook)


def forward_hooks(root: torch.nn.Module) -> int:
    return sum(len(module._forward_hooks) for module in root.modules())


def test_multilingual_removes_the_hooks_each_call_adds(multilingual: Any, voice: Path) -> None:
    """0.1.7 registers three attention hooks per call and never removes them, and leaves the
    model on eager attention: a long-lived worker got slower with every chunk."""
    engine = cb.ChatterboxEngine.from_model(multilingual, spec(variant="multilingual"))
    tfmr = multilingual.t3.tfmr
    attention = tfmr.config._attn_implementation
    fr = request(voice, seed=3, text="Bonjour.", language="fr-FR")
    first = ok(render_one(engine, fr))
    hooks = forward_hooks(tfmr)  # transformers' own capture hooks, installed on first use
    conds = engine._conditionals(str(voice))
    text = multilingual.tokenizer.text_to_tokens("Salut.", language_id="fr")
    text = torch.nn.functional.pad(torch.cat([text, text]), (1, 0), value=255)
    text = torch.nn.functional.pad(text, (0, 1), value=0)
    for _ in range(50):
        with torch.inference_mode(), cb.quiet():
            multilingual.t3.inference(t3_cond=conds.t3, text_tokens=text, max_new_tokens=2)
        assert forward_hooks(tfmr) == hooks
    assert tfmr.config._attn_implementation == attention
    assert tfmr.config.output_attentions is False
    again = ok(render_one(engine, fr))
    assert np.array_equal(again.audio, first.audio)


def test_multilingual_that_samples_no_speech_tokens_takes_the_next_seed(
    multilingual: Any, voice: Path
) -> None:
    """The library's loop (Multilingual's own stop control ends a render of one repeated token
    after a few steps): its first render only is steered to padding ids."""
    engine = cb.ChatterboxEngine.from_model(multilingual, spec(variant="multilingual"))
    inner = multilingual.t3.inference
    handle = force_speech_head(multilingual.t3, token=7000, steps=10**6)

    def first_render_steered(*args: Any, **kwargs: Any) -> Any:
        try:
            return inner(*args, **kwargs)
        finally:
            handle.remove()

    multilingual.t3.inference = first_render_steered
    try:
        result = ok(render_one(engine, request(voice, seed=5, text="Hallo.", language="de")))
    finally:
        handle.remove()
        multilingual.t3.inference = inner
    assert result.info["qa_renders"] == 2
    assert result.info["seed_used"] == 5 + cb.SEED_STRIDE


class NetworkCalls:
    """Every name lookup and socket connection attempted while installed; each fails."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import socket

        self.addresses: list[Any] = []

        def refuse(sock: Any, address: Any, *args: Any) -> Any:
            self.addresses.append(address)
            raise ConnectionRefusedError(f"test: no network ({address})")

        def unresolved(host: Any, *args: Any, **kwargs: Any) -> Any:
            self.addresses.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"test: no network ({host})")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse)
        monkeypatch.setattr(socket, "getaddrinfo", unresolved)


def hub_cache_with(folder: Path, cache: Path, repo_id: str) -> Path:
    """`folder`'s files as the Hugging Face cache holds a downloaded repo."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.parent.mkdir(parents=True)
    folder.rename(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    return snapshot


def test_weights_in_the_hub_cache_load_without_a_network_call(
    model: Any, voice: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not HF_HUB_OFFLINE: a worker on a box without a route out, with the weights cached,
    starts at once instead of asking the Hub about each file and waiting out its timeouts."""
    cache = tmp_path / "hub"
    hub_cache_with(
        tiny.save_checkpoint(model, tmp_path / "ckpt", voice), cache, "ResembleAI/chatterbox"
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setitem(LLAMA_CONFIGS, "Llama_520M", LLAMA_CONFIGS[tiny.TINY_LLAMA])
    calls = NetworkCalls(monkeypatch)
    engine = cb.load(spec(), "cpu")
    assert calls.addresses == []
    assert torch.equal(engine.model.t3.speech_emb.weight, model.t3.speech_emb.weight)
    assert engine.model.conds is not None  # the cached checkpoint's built-in voice
    engine.close()


def test_multilingual_reads_its_cangjie_table_beside_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.1.7 asks the Hub for it with the checkpoint folder as a cache, always: offline it
    logs a warning and reads Chinese without it. A full Multilingual checkpoint is too big to
    write here, so the tokenizer is built as from_local builds it, inside the engine's loader
    context."""
    from chatterbox.models.tokenizers import MTLTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny.build_tiny_multilingual(tmp_path)  # writes mtl_tokenizer.json
    (tmp_path / "Cangjie5_TC.json").write_text(json.dumps(["好\tvnd", "書\tlga"]), "utf-8")
    calls = NetworkCalls(monkeypatch)
    with cb._checkpoint_files_first():
        tokenizer = MTLTokenizer(str(tmp_path / "mtl_tokenizer.json"))
    assert tokenizer.cangjie_converter.word2cj == {"好": "vnd", "書": "lga"}
    assert calls.addresses == []
    empty = tmp_path / "empty"
    empty.mkdir()
    mtl = dataclasses.replace(spec(variant="multilingual"), model=str(empty))
    with pytest.raises(EngineUnavailable, match=r"Cangjie5_TC\.json"):
        cb.load(mtl, "cpu")


def test_watermark_false_loads_without_the_watermarker(
    model: Any, voice: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """perth leaves its watermarker None when it cannot import it (setuptools >= 81): the
    models' constructors then fail, unless the profile has turned watermarking off."""
    import perth

    folder = tiny.save_checkpoint(model, tmp_path / "ckpt", voice)
    monkeypatch.setitem(LLAMA_CONFIGS, "Llama_520M", LLAMA_CONFIGS[tiny.TINY_LLAMA])
    monkeypatch.setattr(perth, "PerthImplicitWatermarker", None)
    with pytest.raises(EngineUnavailable, match=r"setuptools<81.*watermark: false"):
        cb.load(dataclasses.replace(spec(), model=str(folder)), "cpu")
    engine = cb.load(dataclasses.replace(spec(watermark=False), model=str(folder)), "cpu")
    tiny.cap_speech_tokens(engine.model, lambda: tiny.DEFAULT_TOKENS)
    result = ok(render_one(engine, request(None, seed=4)))
    assert result.info["watermarked"] is False
    assert perth.PerthImplicitWatermarker is None  # put back as it was
    engine.close()
