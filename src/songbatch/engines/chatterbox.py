"""Chatterbox TTS (Resemble AI, MIT) through the `chatterbox-tts` package: `songbatch[chatterbox]`.

Variants (profile `params.variant`): `english` (ChatterboxTTS), `turbo` (ChatterboxTurboTTS) and
`multilingual` (ChatterboxMultilingualTTS, `language_id` from the manifest's language). Weights
come from the variant's Hugging Face repo on first use (the library's own `from_pretrained`), or
from a local checkpoint folder named in the profile's `model:` (`from_local`).

Per request: conditionals for the voice reference (prepared once per voice, cached on disk as
`<voice>.<variant>.conds.pt` and in memory), the library's seed-less `generate` with the torch
RNG seeded first, then a duration check: a render far shorter or longer than its text predicts
(truncated, or a run-on up to the model's 40 s stop) is rendered again with another seed.

The package is noisy: a tqdm bar per call (set TQDM_DISABLE=1 before it is imported, as workers
do and as this module does when it is first), a print when the watermarker loads, warnings from
its dependencies and `logging.warning` on the root logger. Every library call runs in `quiet()`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import random
import re
import secrets
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before tqdm is imported (by torch's and chatterbox's imports): it reads TQDM_* once, then.
os.environ.setdefault("TQDM_DISABLE", "1")

with warnings.catch_warnings():
    # perth imports pkg_resources, which warns on import; diffusers and transformers warn too.
    warnings.simplefilter("ignore")
    import numpy as np
    import numpy.typing as npt
    import perth
    import torch
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES, ChatterboxMultilingualTTS
    from chatterbox.tts import ChatterboxTTS

from songbatch.engines import chatterbox_batch as batch
from songbatch.engines.base import EngineSpec, ProgressFn, RenderRequest, RenderResult
from songbatch.engines.checkpoints import CHATTERBOX_VARIANTS, Variant, cached_snapshot
from songbatch.engines.gpu_memory import free_memory, is_out_of_memory
from songbatch.errors import EngineError, EngineUnavailable

# The library hard-codes 1,000 speech tokens per call at 25 tokens/s: a render at this length
# stopped on the cap rather than on its own stop token, whatever its ratio says.
MAX_RENDER_S = 40.0
_CAP_SLACK_S = 0.5
# Seeds of successive QA re-renders: far apart, so retries do not share sampling paths.
SEED_STRIDE = 1_000_003
# Short texts still render with leading/trailing breath: never expect less than this.
MIN_EXPECTED_S = 1.0
# What a request with nothing speakable renders as (a "* * *" scene break): a pause.
UNSPEAKABLE_S = 0.25
# Voices kept in memory per worker (each is a few hundred KB of tensors on the device).
MAX_VOICES = 16
# 0.1.7's English T3 loop always stacks a CFG batch of 2, so cfg_weight=0 fails on a shape
# mismatch; this weight is the same as 0 to the sampler and keeps the batch the loop expects.
_CFG_FLOOR = 1e-6

DEFAULTS: dict[str, Any] = {
    "variant": "english",
    "watermark": True,
    "dtype": "auto",
    "tf32": True,
    "qa_min_ratio": 0.5,
    "qa_max_ratio": 2.0,
    "qa_retries": 2,
    "chars_per_second": 14.0,
}
_GENERATION_PARAMS = (
    "exaggeration",
    "cfg_weight",
    "temperature",
    "min_p",
    "top_p",
    "top_k",
    "repetition_penalty",
    "norm_loudness",
)
# The generation params a batched token loop shares (the others, exaggeration, go per row).
_BATCH_SAMPLING = ("cfg_weight", "temperature", "min_p", "top_p", "repetition_penalty")
TOKENS_PER_S = 25  # S3Gen's speech token rate
_HUB_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.pt", "*.model"]
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


# The variants' repos and checkpoint files live in a torch-free module, so `songbatch doctor`
# reads the same table without importing this one.
VARIANTS = CHATTERBOX_VARIANTS


# ---------------------------------------------------------------------------------------------
# Loading


def load(spec: EngineSpec, device: str) -> ChatterboxEngine:
    """Engine factory named in the registry: the library's own loaders, on `device`."""
    variant = variant_of(spec)
    torch_device = _torch_device(device)
    watermark = bool(spec.params.get("watermark", DEFAULTS["watermark"]))
    if watermark:
        _check_watermarker()
    with _watermarker_for_construction(watermark):
        model = _load_model(spec.model, variant, torch_device)
    use_tf32(torch_device, bool(spec.params.get("tf32", DEFAULTS["tf32"])))
    return ChatterboxEngine(model, spec, torch_device)


def use_tf32(device: str, enabled: bool) -> None:
    """S3Gen (flow matching and the vocoder) runs in float32, and the library leaves TF32 off
    for matmuls: on an Ampere or newer GPU TF32 runs them on the tensor cores (about 10 bits
    of mantissa, as cuDNN's convolutions already use by default). The worker owns its process,
    so the process-wide switch is its own."""
    if device.startswith("cuda") and enabled:
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True


def variant_of(spec: EngineSpec) -> Variant:
    name = str(spec.params.get("variant", DEFAULTS["variant"])).lower()
    if name not in VARIANTS:
        raise EngineUnavailable(
            f"chatterbox variant {name!r} is unknown; known: {', '.join(VARIANTS)}"
        )
    return VARIANTS[name]


def _torch_device(device: str) -> str:
    """The worker pins one GPU with CUDA_VISIBLE_DEVICES, so "cuda" is always its cuda:0."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailable(f"chatterbox: device {device!r} asked for, but CUDA is not usable")
    return device


def _check_watermarker() -> None:
    """perth swallows its own ImportError and leaves the watermarker None (setuptools >= 81 has
    no pkg_resources); the models then fail to construct with an unhelpful TypeError."""
    if perth.PerthImplicitWatermarker is None:
        raise EngineUnavailable(
            "chatterbox: the Perth watermarker did not import (setuptools >= 81 removed"
            " pkg_resources): pip install 'setuptools<81', or set `watermark: false` in the"
            " profile"
        )


@contextlib.contextmanager
def _watermarker_for_construction(watermark: bool) -> Iterator[None]:
    """Each model's constructor builds perth's watermarker unconditionally; with watermarking
    off it gets the stand-in instead, so a machine without a working perth still loads."""
    if watermark:
        yield
        return
    saved = perth.PerthImplicitWatermarker
    perth.PerthImplicitWatermarker = _NoWatermark
    try:
        yield
    finally:
        perth.PerthImplicitWatermarker = saved


def _model_class(variant: Variant) -> Any:
    if variant.name == "turbo":
        # Imported only when asked for: it alone needs pyloudnorm.
        with quiet():
            from chatterbox.tts_turbo import ChatterboxTurboTTS
        return ChatterboxTurboTTS
    return ChatterboxMultilingualTTS if variant.name == "multilingual" else ChatterboxTTS


def local_folder(model: str) -> Path | None:
    """A checkpoint folder named by `model`, None for a Hub repo id; a path that names no
    folder is an error (a typo must not turn into a download)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    looks_like_repo = _REPO_ID.fullmatch(model) and not model.startswith((".", "~"))
    if looks_like_repo:
        return None
    raise EngineUnavailable(
        f"chatterbox: local checkpoint folder {model!r} does not exist; name an existing folder"
        " or a Hugging Face repo id in the profile's `model:`"
    )


def _load_model(model: str, variant: Variant, device: str) -> Any:
    folder = local_folder(model)
    cls = _model_class(variant)
    if folder is not None:
        missing = [name for name in variant.files if not (folder / name).is_file()]
        if missing:
            raise EngineUnavailable(
                f"chatterbox {variant.name}: {folder} lacks {', '.join(missing)}; it needs the"
                f" files of {variant.repo_id}"
            )
        return _from_folder(cls, variant, folder, device)
    cached = cached_snapshot(model)
    if cached is not None and all((cached / name).is_file() for name in variant.files):
        # Every file is in the cache: no network call at all (the library's from_pretrained
        # asks the Hub about each file first, and waits out its timeouts when offline).
        return _from_folder(cls, variant, cached, device)
    known = {v.repo_id for v in VARIANTS.values()}
    try:
        with quiet(), _checkpoint_files_first():
            if model in known:
                # The library's own download: it knows each variant's repo and files.
                return cls.from_pretrained(device)
            from huggingface_hub import snapshot_download

            return cls.from_local(snapshot_download(model, allow_patterns=_HUB_PATTERNS), device)
    except Exception as exc:  # no network, not cached, gated, missing file: all "unavailable"
        repo = variant.repo_id if model in known else model
        raise EngineUnavailable(
            f"chatterbox {variant.name} weights ({repo}) are not available here"
            f" ({type(exc).__name__}: {_first_line(exc)}); download them once into the Hugging"
            f" Face cache (`hf download {repo}`), name a local checkpoint folder in the"
            " profile's `model:`, or use --profile offline|replicate"
        ) from exc


def _from_folder(cls: Any, variant: Variant, folder: Path, device: str) -> Any:
    try:
        with quiet(), _checkpoint_files_first():
            return cls.from_local(folder, device)
    except Exception as exc:  # wrong variant's files, damaged or foreign weights
        raise EngineUnavailable(
            f"chatterbox {variant.name}: {folder} does not load as this variant's checkpoint"
            f" ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc


@contextlib.contextmanager
def _checkpoint_files_first() -> Iterator[None]:
    """0.1.7's Multilingual tokenizer fetches its Cangjie table (Chinese) with
    `hf_hub_download(..., cache_dir=<checkpoint folder>)`, which treats the checkpoint as a
    cache: it always goes to the network, and offline it only logs a warning and reads Chinese
    without the table. The file beside the checkpoint is used instead, where it is."""
    from chatterbox.models.tokenizers import tokenizer as module

    inner = module.hf_hub_download

    def download(repo_id: str, filename: str, cache_dir: Any = None, **kwargs: Any) -> str:
        beside = Path(cache_dir) / filename if cache_dir is not None else None
        if beside is not None and beside.is_file():
            return str(beside)
        return str(inner(repo_id=repo_id, filename=filename, cache_dir=cache_dir, **kwargs))

    module.hf_hub_download = download
    try:
        yield
    finally:
        module.hf_hub_download = inner


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class QASettings:
    min_ratio: float
    max_ratio: float
    retries: int
    chars_per_second: float

    @classmethod
    def from_params(cls, params: dict[str, Any], chars_per_second: float) -> QASettings:
        """`chars_per_second` is the profile's estimate, unless the params name their own."""
        settings = cls(
            min_ratio=float(params.get("qa_min_ratio", DEFAULTS["qa_min_ratio"])),
            max_ratio=float(params.get("qa_max_ratio", DEFAULTS["qa_max_ratio"])),
            retries=int(params.get("qa_retries", DEFAULTS["qa_retries"])),
            chars_per_second=float(params.get("chars_per_second", chars_per_second)),
        )
        if not (0 <= settings.min_ratio <= settings.max_ratio and settings.retries >= 0):
            raise EngineError(
                f"chatterbox QA settings are inconsistent: {settings}", retryable=False
            )
        if settings.chars_per_second <= 0:
            raise EngineError("chatterbox: chars_per_second must be > 0", retryable=False)
        return settings

    def expected_s(self, text: str) -> float:
        return max(MIN_EXPECTED_S, len(text) / self.chars_per_second)

    def problem(self, duration_s: float, ratio: float) -> str | None:
        """Why a render fails QA, or None."""
        if not self.min_ratio <= ratio <= self.max_ratio:
            bounds = f"{_num(self.min_ratio)}-{_num(self.max_ratio)}"
            return f"duration ratio {ratio:.2f} outside {bounds}"
        if duration_s >= MAX_RENDER_S - _CAP_SLACK_S:
            return f"render ran to the model's {MAX_RENDER_S:g} s cap (ratio {ratio:.2f})"
        return None


def _num(value: float) -> str:
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


class _NoWatermark:
    """Stands in for perth's watermarker when a profile turns watermarking off: the library
    calls `apply_watermark` unconditionally at the end of every generate."""

    def apply_watermark(
        self, wav: npt.NDArray[np.float32], sample_rate: int, **_: Any
    ) -> npt.NDArray[np.float32]:
        return wav


@dataclass
class _Chunk:
    """One request on its way through QA: which seed is next, and the ratios so far."""

    index: int  # position in the render() call
    request: RenderRequest
    text: str
    qa: QASettings
    kwargs: dict[str, Any]  # generation params for the library's generate
    conds: Any
    max_new_tokens: int
    ratios: list[float] = field(default_factory=list)
    batch: int = 1  # rows in the token loop of its latest render

    @property
    def seed(self) -> int:
        return self.request.seed + len(self.ratios) * SEED_STRIDE

    @property
    def expected_s(self) -> float:
        return self.qa.expected_s(self.text)


def _by_sampling(chunks: list[_Chunk]) -> dict[batch.Sampling, list[_Chunk]]:
    groups: dict[batch.Sampling, list[_Chunk]] = {}
    for chunk in chunks:
        known = {k: v for k, v in chunk.kwargs.items() if k in _BATCH_SAMPLING}
        groups.setdefault(batch.Sampling(**known), []).append(chunk)
    return groups


class ChatterboxEngine:
    """One loaded Chatterbox model. English chunks of one call share a batched token loop; the
    other variants render one chunk at a time through the library's `generate`.

    Profile params (each overridable per book/chapter, except variant and dtype): `variant`,
    `watermark` (default true), `dtype` (`auto`: bf16 autocast for the T3 token loop on a
    bf16-capable GPU, float32 elsewhere; `float32`; `bfloat16`), `qa_min_ratio`, `qa_max_ratio`,
    `qa_retries`, `chars_per_second`, and the generation params `exaggeration`, `cfg_weight`,
    `temperature`, `min_p`, `top_p`, `top_k`, `repetition_penalty`, `norm_loudness` (each sent
    only where the variant's `generate` takes it), and `max_new_tokens` (the batched loop's cap,
    1,000 like the library's).
    """

    def __init__(self, model: Any, spec: EngineSpec, device: str = "cpu") -> None:
        self.spec = spec
        self.model = model
        self.device = device
        self.variant = variant_of(spec)
        self.sample_rate = int(model.sr)
        self.watermark = bool(spec.params.get("watermark", DEFAULTS["watermark"]))
        # The profile's own estimate when the spec carries one (the planner sizes chunks by it).
        self.chars_per_second = float(
            getattr(spec, "chars_per_second", None) or DEFAULTS["chars_per_second"]
        )
        # The watermark runs in the worker's writer thread (RenderResult's `finish`), not in
        # the library's generate or the render loop: the device renders the next batch
        # meanwhile. Perth runs on the CPU, with two resamples per chunk.
        if not isinstance(model.watermarker, _NoWatermark):
            model.perth_watermarker = model.watermarker  # for later engines on this model
        self._watermarker = getattr(model, "perth_watermarker", None) if self.watermark else None
        model.watermarker = _NoWatermark()
        self._builtin = model.conds  # the checkpoint's conds.pt voice, if it has one
        self._voices: OrderedDict[str, Any] = OrderedDict()
        self._conds_cls = _conds_class(model)
        self._accepted = frozenset(inspect.signature(model.generate).parameters)
        self.token_loops = 0  # batched token loops run (tests and benchmarks count them)
        self.autocast_dtype = _autocast_dtype(str(spec.params.get("dtype", "auto")), device)
        if self.autocast_dtype is not None:
            _autocast_t3(model, device, self.autocast_dtype)
        _speech_tokens_only_into_s3gen(model)
        if self.variant.name == "multilingual":
            _remove_alignment_hooks_after_each_call(model.t3)

    @classmethod
    def from_model(cls, model: Any, spec: EngineSpec, device: str = "cpu") -> ChatterboxEngine:
        """Around a model already constructed (tests, benchmarks); `load` is the normal way."""
        return cls(model, spec, device)

    def render(
        self, requests: Sequence[RenderRequest], progress: ProgressFn
    ) -> list[RenderResult | EngineError]:
        """English chunks of one call sample their speech tokens together (see
        `chatterbox_batch`), a call of one chunk too: one path, so a chunk retried or resumed
        alone sounds as it did in its batch. The other variants use the library's own
        `generate` per chunk."""
        results: list[RenderResult | EngineError | None] = [None] * len(requests)
        chunks: list[_Chunk] = []
        for index, request in enumerate(requests):
            try:
                prepared = self._prepare(index, request)
            except Exception as exc:
                results[index] = self._as_error(request, exc)
                continue
            if isinstance(prepared, RenderResult):
                results[index] = prepared
            else:
                chunks.append(prepared)
            progress()
        if self.variant.name == "english" and chunks:
            self._render_together(chunks, results, progress)
        else:
            for chunk in chunks:
                try:
                    results[chunk.index] = self._render_alone(chunk, progress)
                except Exception as exc:
                    results[chunk.index] = self._as_error(chunk.request, exc)
                progress()
        return [result for result in results if result is not None]

    def close(self) -> None:
        self._voices.clear()
        self.model = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    # -- one request

    def _prepare(self, index: int, request: RenderRequest) -> _Chunk | RenderResult:
        text = request.text.strip()
        if not any(ch.isalnum() for ch in text):
            # Nothing to say; the library would read out "You need to add some text..." instead.
            silence = np.zeros(round(UNSPEAKABLE_S * self.sample_rate), dtype=np.float32)
            return RenderResult(silence, self.sample_rate, {"engine": "chatterbox", "silent": True})
        params = {**self.spec.params, **request.params}
        qa = QASettings.from_params(params, self.chars_per_second)
        kwargs = self._generation_kwargs(params)
        conds = self._conditionals(request.voice_path)
        return _Chunk(
            index, request, text, qa, kwargs, conds, int(params.get("max_new_tokens", 1000))
        )

    def _render_alone(self, chunk: _Chunk, progress: ProgressFn) -> RenderResult:
        while True:
            audio = self._generate(chunk.text, chunk.conds, chunk.kwargs, chunk.seed)
            progress()
            result = self._judge(chunk, audio)
            if result is not None:
                return result

    def _judge(self, chunk: _Chunk, audio: npt.NDArray[np.float32]) -> RenderResult | None:
        """The result if this render passes QA; None to render again with the next seed;
        raises when the chunk has used its seeds."""
        seed = chunk.seed
        duration = audio.shape[0] / self.sample_rate
        ratio = duration / chunk.expected_s
        chunk.ratios.append(ratio)
        problem = "sampled no speech tokens" if audio.size == 0 else None
        problem = problem or chunk.qa.problem(duration, ratio)
        if problem is None and not np.isfinite(audio).all():
            problem = "non-finite samples"
        if problem is None:
            info = self._info(ratio, len(chunk.ratios), seed, chunk.request.voice_path)
            info["batch"] = chunk.batch
            return RenderResult(audio, self.sample_rate, info, finish=self._finish)
        if len(chunk.ratios) <= chunk.qa.retries:
            return None
        tried = ", ".join(f"{r:.2f}" for r in chunk.ratios)
        raise EngineError(
            f"QA: {problem} after {len(chunk.ratios)} seeds (ratios {tried}; expected"
            f" {chunk.expected_s:.1f} s for {len(chunk.text)} characters)",
            retryable=False,
        )

    def _as_error(self, request: RenderRequest, exc: Exception) -> EngineError:
        """One bad request fails its job, never the worker or its batch-mates."""
        return exc if isinstance(exc, EngineError) else _engine_error(request, exc)

    # -- several English chunks at once

    def _render_together(
        self,
        chunks: list[_Chunk],
        results: list[RenderResult | EngineError | None],
        progress: ProgressFn,
    ) -> None:
        """Rounds of one batched token loop per sampling setting; chunks that fail QA go into
        the next round with their next seed."""
        pending = chunks
        while pending:
            again: list[_Chunk] = []
            for sampling, group in _by_sampling(pending).items():
                for chunk, row in self._sample_fitting(group, sampling, progress):
                    if isinstance(row, Exception):
                        results[chunk.index] = self._as_error(chunk.request, row)
                        continue
                    try:
                        result = self._judge(chunk, self._speak(chunk, row))
                    except Exception as exc:
                        results[chunk.index] = self._as_error(chunk.request, exc)
                        continue
                    progress()
                    if result is None:
                        again.append(chunk)
                    else:
                        results[chunk.index] = result
            pending = again

    def _sample_fitting(
        self, group: list[_Chunk], sampling: batch.Sampling, progress: ProgressFn
    ) -> list[tuple[_Chunk, batch.RowTokens | Exception]]:
        """Each chunk with its tokens, or with what stopped them. Out of memory halves the
        group and tries each half; a chunk that does not fit alone fails alone."""
        try:
            tokens = self._sample_together(group, sampling, progress)
            return list(zip(group, tokens, strict=True))
        except Exception as exc:
            if not is_out_of_memory(exc) or len(group) == 1:
                return [(chunk, exc) for chunk in group]
        # Outside the except block: its traceback would pin the failed loop's tensors.
        free_memory(self.device)
        half = len(group) // 2
        return self._sample_fitting(group[:half], sampling, progress) + self._sample_fitting(
            group[half:], sampling, progress
        )

    def _sample_together(
        self, group: list[_Chunk], sampling: batch.Sampling, progress: ProgressFn
    ) -> list[batch.RowTokens]:
        rows = [self._row(chunk) for chunk in group]
        for chunk in group:
            chunk.batch = len(group)
        self.token_loops += 1
        longest = max(chunk.max_new_tokens for chunk in group)
        sample: Callable[..., list[batch.RowTokens]] = batch.sample_speech_tokens
        if self.autocast_dtype is not None:  # as the library's loop is wrapped (_autocast_t3)
            sample = _with_autocast(sample, _device_type(self.device), self.autocast_dtype)
        with quiet():
            return sample(self.model.t3, rows, sampling, max_new_tokens=longest, progress=progress)

    def _row(self, chunk: _Chunk) -> batch.Row:
        from chatterbox.models.t3.modules.cond_enc import T3Cond
        from chatterbox.tts import punc_norm

        base = chunk.conds.t3
        exaggeration = float(chunk.kwargs.get("exaggeration", 0.5))
        cond = T3Cond(
            speaker_emb=base.speaker_emb,
            cond_prompt_speech_tokens=base.cond_prompt_speech_tokens,
            emotion_adv=exaggeration * torch.ones(1, 1, 1),
        ).to(device=self.model.device)
        text_tokens = self.model.tokenizer.text_to_tokens(punc_norm(chunk.text))
        # Valid tokens past this make the chunk longer than QA accepts (25 tokens a second).
        allowed = math.ceil(chunk.qa.max_ratio * chunk.expected_s * TOKENS_PER_S * 1.05) + 2
        return batch.Row(cond, text_tokens, chunk.seed, allowed)

    def _speak(self, chunk: _Chunk, row: batch.RowTokens) -> npt.NDArray[np.float32]:
        """The library's step after its token loop, S3Gen (the watermark is the result's
        `finish`). A run-on row skips it: its valid tokens alone already fail QA, so silence of
        that length stands in."""
        from chatterbox.models.s3tokenizer import drop_invalid_tokens

        tokens = drop_invalid_tokens(row.tokens)
        tokens = tokens[tokens < batch.SPEECH_VOCAB]
        if tokens.numel() == 0:
            return np.zeros(0, np.float32)  # S3Gen fails on it; QA takes the next seed
        if row.run_on:
            return np.zeros(round(tokens.numel() / TOKENS_PER_S * self.sample_rate), np.float32)
        seed_everything(chunk.seed)  # the vocoder's noise: a chunk's audio follows its seed
        with quiet(), torch.inference_mode():
            wav, _ = self.model.s3gen.inference(speech_tokens=tokens, ref_dict=chunk.conds.gen)
            audio = wav.squeeze(0).detach().float().cpu().numpy()
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        return np.clip(audio, -1.0, 1.0, out=audio)

    def _finish(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The watermark, as the library applies it after S3Gen; the same audio whichever
        thread runs it (perth samples nothing outside training)."""
        if self._watermarker is None:
            return audio
        with quiet(), torch.inference_mode():
            marked = self._watermarker.apply_watermark(audio, sample_rate=self.sample_rate)
        marked = np.asarray(marked, dtype=np.float32).reshape(-1)
        return np.clip(marked, -1.0, 1.0, out=marked)

    def _info(self, ratio: float, renders: int, seed: int, voice: str | None) -> dict[str, Any]:
        return {
            "engine": "chatterbox",
            "variant": self.variant.name,
            "qa_ratio": round(ratio, 3),
            "qa_renders": renders,
            "seed_used": seed,
            "watermarked": self.watermark,
            "voice": "builtin" if voice is None else Path(voice).name,
        }

    def _generation_kwargs(self, params: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name in _GENERATION_PARAMS:
            if name in params and name in self._accepted and name not in self.variant.ignored:
                value = params[name]
                kwargs[name] = bool(value) if name == "norm_loudness" else float(value)
        if "top_k" in kwargs:
            kwargs["top_k"] = int(kwargs["top_k"])
        if self.variant.name == "english" and kwargs.get("cfg_weight", 0.5) <= 0:
            kwargs["cfg_weight"] = _CFG_FLOOR
        if self.variant.name == "multilingual":
            kwargs["language_id"] = language_id(params.get("language"))
        else:
            _check_english(self.variant, params.get("language"))
        return kwargs

    def _generate(
        self, text: str, conds: Any, kwargs: dict[str, Any], seed: int
    ) -> npt.NDArray[np.float32]:
        seed_everything(seed)
        # A fresh holder per call: generate replaces `conds.t3` when exaggeration changes, and
        # that must not leak into the cached voice.
        self.model.conds = self._conds_cls(conds.t3, conds.gen)
        try:
            with quiet(), torch.inference_mode():
                wav = self.model.generate(text, **kwargs)
        except _NoSpeechTokens:
            return np.zeros(0, np.float32)  # QA takes the next seed
        audio: npt.NDArray[np.float32] = wav.detach().reshape(-1).float().cpu().numpy()
        return np.clip(audio, -1.0, 1.0, out=audio)

    # -- voices

    def _conditionals(self, voice_path: str | None) -> Any:
        if voice_path is None:
            if self._builtin is None:
                raise EngineError(
                    "chatterbox: no voice reference, and the checkpoint has no built-in voice"
                    " (conds.pt): give the book a voice",
                    retryable=False,
                )
            return self._builtin
        conds = self._voices.get(voice_path)
        if conds is None:
            conds = self._load_or_prepare(Path(voice_path))
            self._voices[voice_path] = conds
            while len(self._voices) > MAX_VOICES:
                self._voices.popitem(last=False)
        self._voices.move_to_end(voice_path)
        return conds

    def conds_path(self, voice: Path) -> Path:
        """`<state>/voices/<sha256>` is named by its content's hash, so the cache beside it is
        keyed by the voice file's hash and the variant."""
        return voice.with_name(f"{voice.name}.{self.variant.name}.conds.pt")

    def _load_or_prepare(self, voice: Path) -> Any:
        cached = self.conds_path(voice)
        if cached.is_file():
            # Unreadable (a foreign or damaged file): prepare again and replace it.
            with contextlib.suppress(Exception), quiet():
                return self._conds_cls.load(cached, map_location=self.device).to(self.device)
        if not voice.is_file():
            raise EngineError(f"chatterbox: voice reference {voice} is missing", retryable=False)
        try:
            with quiet(), torch.inference_mode():
                self.model.prepare_conditionals(str(voice))
        except (AssertionError, ValueError, RuntimeError, OSError) as exc:
            # Turbo asserts a reference over 5 s; an unreadable or silent file fails in librosa.
            raise EngineError(
                f"chatterbox: voice reference {voice} cannot be used: {_first_line(exc)}",
                retryable=False,
            ) from exc
        conds = self.model.conds
        _save_atomically(conds, cached)
        return conds


def _conds_class(model: Any) -> Any:
    """The variant module's Conditionals (the three modules each define the same class)."""
    import sys

    return sys.modules[type(model).__module__].Conditionals


def _save_atomically(conds: Any, target: Path) -> None:
    """Write beside the target, then rename: two workers preparing the same voice each write a
    whole file and the last rename wins, so no reader ever sees half of one. A cache that cannot
    be written (read-only state) costs a re-prepare next time, nothing more."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        conds.save(tmp)
        os.replace(tmp, target)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def language_id(language: Any) -> str:
    """BCP-47 (`pt-BR`, `zh-Hant-TW`) -> the multilingual model's two-letter id."""
    primary = str(language or "en").split("-")[0].split("_")[0].lower()
    if primary == "nb" or primary == "nn":
        primary = "no"  # Norwegian Bokmål/Nynorsk: the model has one Norwegian
    if primary not in SUPPORTED_LANGUAGES:
        raise EngineError(
            f"chatterbox multilingual cannot speak language {language!r}; it speaks"
            f" {', '.join(sorted(SUPPORTED_LANGUAGES))}",
            retryable=False,
        )
    return primary


def _check_english(variant: Variant, language: Any) -> None:
    if language and str(language).split("-")[0].lower() != "en":
        raise EngineError(
            f"chatterbox {variant.name} speaks English only, not {language!r}: use"
            " `variant: multilingual` in the profile",
            retryable=False,
        )


def seed_everything(seed: int) -> None:
    """The library has no seed argument: sampling (T3), flow noise and the vocoder's source
    all draw from the global RNGs, so seeding them makes a render reproducible."""
    torch.manual_seed(seed % 2**63)  # also seeds every CUDA device
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _engine_error(request: RenderRequest, exc: Exception) -> EngineError:
    if is_out_of_memory(exc):
        torch.cuda.empty_cache()
        # The device's state, not the chunk's: set aside uncharged, tried again later.
        return EngineError(
            f"job {request.key}: out of GPU memory: {_first_line(exc)}", transient=True
        )
    # Shape/value problems repeat on every attempt; anything else may be transient.
    retryable = not isinstance(exc, (ValueError, AssertionError, TypeError, KeyError))
    return EngineError(
        f"job {request.key}: chatterbox failed: {type(exc).__name__}: {_first_line(exc)}",
        retryable=retryable,
    )


class _NoSpeechTokens(Exception):
    """A render sampled nothing S3Gen can speak (only its stop token, or padding ids)."""


def _speech_tokens_only_into_s3gen(model: Any) -> None:
    """0.1.7's Multilingual `generate` drops the start/stop tokens but, unlike the English one,
    not the ids past them (6563-8193, padding of the speech vocabulary), and S3Gen's embedding
    then fails with an IndexError on any it gets: keep only speech ids, as English does. With
    none left S3Gen fails on an empty tensor; that is the sampling's fault, not the worker's,
    so it is raised as such and QA renders again with the next seed."""
    inner = model.s3gen.inference

    def inference(*args: Any, speech_tokens: torch.Tensor, **kwargs: Any) -> Any:
        speech = speech_tokens[speech_tokens < batch.SPEECH_VOCAB]
        if speech.numel() == 0:
            raise _NoSpeechTokens
        return inner(*args, speech_tokens=speech, **kwargs)

    model.s3gen.inference = inference


def _remove_alignment_hooks_after_each_call(t3: Any) -> None:
    """0.1.7's Multilingual `T3.inference` builds an AlignmentStreamAnalyzer per call, which
    registers forward hooks on three Llama layers, never removes them, and switches the model
    to eager attention with attention outputs on (upstream resemble-ai/chatterbox#504): each
    call makes every later forward pass slower. After each call its own hooks go (not
    transformers' output-capturing hooks, installed once and read by the library) and the
    attention settings are put back."""
    inner = t3.inference

    def inference(*args: Any, **kwargs: Any) -> Any:
        config = t3.tfmr.config
        saved = (config._attn_implementation, config.output_attentions)
        try:
            return inner(*args, **kwargs)
        finally:
            remove_alignment_hooks(t3.tfmr)
            config._attn_implementation, config.output_attentions = saved

    t3.inference = inference


def remove_alignment_hooks(root: torch.nn.Module) -> int:
    """Remove the analyzer's forward hooks under `root`; how many there were."""
    from chatterbox.models.t3.inference import alignment_stream_analyzer as analyzer

    removed = 0
    for module in root.modules():
        for hook_id, hook in list(module._forward_hooks.items()):
            if getattr(hook, "__module__", None) == analyzer.__name__:
                module._forward_hooks.pop(hook_id)
                module._forward_hooks_with_kwargs.pop(hook_id, None)
                module._forward_hooks_always_called.pop(hook_id, None)
                removed += 1
    return removed


# ---------------------------------------------------------------------------------------------
# Precision


def _autocast_dtype(name: str, device: str) -> torch.dtype | None:
    """bf16 only for the T3 token loop and only on a GPU that has it: S3Gen's flow and vocoder
    stay float32 (the library marks its reduced-precision path FIXME)."""
    on_gpu = device.startswith("cuda")
    if name == "float32" or (name == "auto" and not on_gpu):
        return None
    if name in ("auto", "bfloat16"):
        if on_gpu and not torch.cuda.is_bf16_supported():
            if name == "auto":
                return None
            raise EngineUnavailable("chatterbox: dtype bfloat16 asked for, but this GPU lacks it")
        return torch.bfloat16
    raise EngineUnavailable(f"chatterbox: dtype {name!r} is unknown; use auto|float32|bfloat16")


def _autocast_t3(model: Any, device: str, dtype: torch.dtype) -> None:
    """Wrap the instance's T3 sampling methods in autocast; weights stay float32, so the
    conditioning tensors (float32, recreated per call for exaggeration) still fit them."""
    device_type = _device_type(device)
    for name in ("inference", "inference_turbo"):
        inner = getattr(model.t3, name, None)
        if inner is not None:
            setattr(model.t3, name, _with_autocast(inner, device_type, dtype))


def _device_type(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def _with_autocast(
    inner: Callable[..., Any], device_type: str, dtype: torch.dtype
) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=device_type, dtype=dtype):
            return inner(*args, **kwargs)

    return wrapped


# ---------------------------------------------------------------------------------------------
# Quiet


class _DropLibraryRecords(logging.Filter):
    """s3gen calls `logging.warning` on the root logger; drop the package's records there."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "chatterbox" not in record.pathname and "perth" not in record.pathname


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the library for one call: stdout prints, warnings, and its log records (root's
    `logging.warning` would otherwise install a stderr handler through basicConfig)."""
    with contextlib.ExitStack() as stack:
        devnull = stack.enter_context(open(os.devnull, "w"))
        stack.enter_context(contextlib.redirect_stdout(devnull))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        root = logging.getLogger()
        if not root.handlers:
            guard = logging.NullHandler()
            root.addHandler(guard)
            stack.callback(root.removeHandler, guard)
        drop = _DropLibraryRecords()
        root.addFilter(drop)
        stack.callback(root.removeFilter, drop)
        for name in ("chatterbox", "transformers", "diffusers", "perth", "huggingface_hub"):
            logger = logging.getLogger(name)
            stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.ERROR)
        yield
