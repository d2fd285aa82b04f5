"""MusicGen (facebook/musicgen-*) through transformers: text prompt -> instrumental music.

Imported only in worker processes (see `engines.load_engine`), so torch and transformers load at
module import.

How a batch is rendered
-----------------------
* Requests are grouped by (length, sampling params, stride) and each group is generated in
  batches of up to `batch_limit` (the profile's `batch_size`, or with `auto` what the device's
  free memory holds at load, see `auto_batch_limit`), ONE `generate` call per batch and window.
  With `auto` on CUDA each batch is sized again just before it (`AutoBatch`): from the memory
  free then, and from the peak an earlier batch was measured at once there is one.
* MusicGen was trained on 30 s. Longer tracks are continued like audiocraft's `extend_stride`:
  the first window makes 30 s; every further window is prompted with the codes of the last
  (30 - stride) s, exactly as the previous window sampled them, and adds up to `stride` s
  (param `extend_stride`, default 18). The codes go in as `decoder_input_ids`, in the layout
  generate() builds from an audio prompt ((batch * codebooks, frames), stereo's left/right
  codebooks interleaved); generate() returns only audio, so they are taken from its closing
  call to EnCodec's decode (`_decoded_codes`). Prompting with the decoded audio instead
  (`input_values`) would make generate() re-encode it: a lossy EnCodec round trip that hands
  the next window codes the model never chose (drift) and an encode pass per window (work).
  Each window's audio is decoded on its own (prompt + new codes); its decode of the prompt
  region is crossfaded into the previous tail over `_CROSSFADE_S`, so the join is the codec's
  own continuous decode. The result is exactly round(duration_s * sample_rate) samples.
* Reproducibility: generate() cannot take a torch.Generator per row, so sampling is done by our
  own logits processor (`_Sampler`), with one generator per request seeded from that request's
  seed; generate() itself runs greedily and just takes the token we chose. A track's samples
  therefore do not depend on its batch-mates or on how an out-of-memory retry split its batch.
  The one caveat is floating point: batched kernels may round a logit differently at another
  batch size, which can, rarely, flip one sampled token and everything after it. Same request
  and same batch composition on the same device and software is bit-identical.
* Out of memory: free the cache, halve the batch, retry; a single track that still does not
  fit fails alone as transient: set aside uncharged and tried again later, never charged.

Params (profile, album or track): `guidance_scale` (<= 1: none), `temperature`, `top_k`,
`top_p` (0 or 1 = off, as in audiocraft), `do_sample` (false = greedy), `extend_stride`
(seconds), `duration_s` (when the request has none) and, at load, `dtype` (`float16` default on
CUDA, `bfloat16`, `float32`; the CPU always uses float32). Other keys are ignored. `lyrics` are
ignored too: MusicGen cannot sing, and the result's info says so.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import (
    AutoProcessor,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    MusicgenForConditionalGeneration,
    PretrainedConfig,
    ProcessorMixin,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import logging as hf_logging

from songbatch.engines.base import EngineSpec, ProgressFn, RenderRequest, RenderResult
from songbatch.engines.gpu_memory import free_memory, is_out_of_memory
from songbatch.errors import EngineError, EngineUnavailable

WINDOW_S = 30.0  # what MusicGen was trained on; its positional range allows a little more
DEFAULT_STRIDE_S = 18.0  # audiocraft's default extend_stride
DEFAULT_DURATION_S = 30.0
_CROSSFADE_S = 0.05
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_QUIET_LOGGERS = ("transformers", "huggingface_hub")


def load(spec: EngineSpec, device: str) -> MusicGenEngine:
    """Engine factory named in the registry; `device` is "cuda" (the worker's one GPU) or "cpu"."""
    where = torch.device("cuda:0" if device == "cuda" else device)
    model, processor = _load(spec.model, where, _dtype(spec.params, where))
    return MusicGenEngine(spec, model, processor)


# ---------------------------------------------------------------------------------------------
# Per-request settings


@dataclass(frozen=True)
class Sampling:
    """Generation settings that must be equal within one generate() call."""

    guidance_scale: float  # <= 1: no classifier-free guidance
    do_sample: bool
    temperature: float
    top_k: int  # 0 = off
    top_p: float  # 1.0 = off
    stride_s: float

    @property
    def guidance(self) -> bool:
        return self.guidance_scale > 1


@dataclass(frozen=True)
class _Job:
    index: int  # position in the render() call
    request: RenderRequest
    samples: int
    sampling: Sampling

    @property
    def group(self) -> tuple[int, Sampling]:
        return (self.samples, self.sampling)


def _number(params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EngineError(f"musicgen param {name} must be a number, got {value!r}", retryable=False)
    return float(value)


def sampling_from(params: dict[str, Any], defaults: GenerationConfig) -> Sampling:
    """Merged params over the checkpoint's generation_config (musicgen: cfg 3, top_k 250)."""
    do_sample = params.get("do_sample", defaults.do_sample)
    if not isinstance(do_sample, bool):
        raise EngineError(f"musicgen param do_sample must be true or false, got {do_sample!r}")
    sampling = Sampling(
        guidance_scale=_number(params, "guidance_scale", defaults.guidance_scale or 1.0),
        do_sample=do_sample,
        temperature=_number(params, "temperature", defaults.temperature or 1.0),
        top_k=int(_number(params, "top_k", defaults.top_k or 0)),
        top_p=_number(params, "top_p", defaults.top_p or 1.0) or 1.0,
        stride_s=_number(params, "extend_stride", DEFAULT_STRIDE_S),
    )
    _check(sampling)
    return sampling


def _check(s: Sampling) -> None:
    problems = []
    if s.guidance_scale < 0:
        problems.append("guidance_scale must be >= 0")
    if s.temperature <= 0:
        problems.append("temperature must be > 0 (use do_sample: false for greedy)")
    if s.top_k < 0:
        problems.append("top_k must be >= 0")
    if not 0 < s.top_p <= 1:
        problems.append("top_p must be in [0, 1]")
    if not 0 < s.stride_s < WINDOW_S:
        problems.append(f"extend_stride must be between 0 and {WINDOW_S:g} seconds")
    if problems:
        raise EngineError("musicgen: " + "; ".join(problems), retryable=False)


# ---------------------------------------------------------------------------------------------
# Windows


@dataclass(frozen=True)
class Window:
    prompt_frames: int  # codec frames of audio prompt (0 for the first window)
    new_frames: int  # codec frames this window adds


def plan_windows(total_frames: int, window_frames: int, stride_frames: int) -> list[Window]:
    """audiocraft's extend_stride schedule: a full first window, then (window - stride) frames of
    prompt plus up to `stride` new frames each, until `total_frames` are made."""
    windows = [Window(0, min(total_frames, window_frames))]
    made = windows[0].new_frames
    while made < total_frames:
        new = min(stride_frames, total_frames - made)
        windows.append(Window(window_frames - stride_frames, new))
        made += new
    return windows


# ---------------------------------------------------------------------------------------------
# Logits processors: heartbeat and per-request sampling


class _Heartbeat(LogitsProcessor):
    """Calls progress() once per decoding step, so long windows keep their lease alive."""

    def __init__(self, progress: ProgressFn) -> None:
        self.progress = progress

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        self.progress()
        return scores


class _Sampler(LogitsProcessor):
    """Chooses every row's next token itself and returns scores that make it the only choice.

    Rows are (request, codebook) pairs. Each request samples from its own generator, so its draws
    do not depend on its batch-mates. generate() runs greedily (argmax picks our token). MusicGen's
    generate() appends its classifier-free-guidance processor to the list we pass, i.e. AFTER
    this one: so we receive the conditional and unconditional halves, apply guidance ourselves,
    and return the same one-hot rows in both halves; guidance of two equal halves is that same
    row again. The filler must be finite: -inf - -inf would be NaN.
    """

    def __init__(
        self, sampling: Sampling, generators: list[torch.Generator], codebooks: int
    ) -> None:
        self.sampling = sampling
        self.generators = generators
        self.codebooks = codebooks
        warpers: list[LogitsProcessor] = []
        if sampling.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_k > 0:
            warpers.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            warpers.append(TopPLogitsWarper(sampling.top_p))
        self.warpers = LogitsProcessorList(warpers)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        rows = len(self.generators) * self.codebooks
        expected = 2 * rows if self.sampling.guidance else rows
        if scores.shape[0] != expected:
            # transformers changed where its CFG runs: fail loudly rather than sample garbage.
            raise RuntimeError(f"musicgen sampler got {scores.shape[0]} rows, expected {expected}")
        logits = scores.float()
        if self.sampling.guidance:
            cond, uncond = logits.chunk(2)
            logits = uncond + (cond - uncond) * self.sampling.guidance_scale
        tokens = self._choose(input_ids, logits)
        chosen = scores.new_full((rows, scores.shape[1]), torch.finfo(scores.dtype).min)
        chosen.scatter_(1, tokens[:, None], 0.0)
        return chosen.repeat(2, 1) if self.sampling.guidance else chosen

    def _choose(self, input_ids: torch.LongTensor, logits: torch.Tensor) -> torch.Tensor:
        if not self.sampling.do_sample:
            return logits.argmax(dim=-1)
        probs = torch.softmax(self.warpers(input_ids, logits), dim=-1)
        per_request = probs.chunk(len(self.generators))  # equal (codebooks, vocab) slices
        picks = [
            torch.multinomial(rows, 1, generator=generator).squeeze(1)
            for rows, generator in zip(per_request, self.generators, strict=True)
        ]
        return torch.cat(picks)


# ---------------------------------------------------------------------------------------------
# The engine


class MusicGenEngine:
    """MusicGen on the model's device. `generate_calls` counts model.generate() calls (one per
    batch and window), so tests and benchmarks can see that a batch was generated together."""

    def __init__(
        self,
        spec: EngineSpec,
        model: MusicgenForConditionalGeneration,
        processor: ProcessorMixin,
    ) -> None:
        """Wrap a loaded model (see `load`); benchmarks also pass in-memory random models."""
        self.spec = spec
        self.model = model
        self.processor = processor
        self.device = model.device
        self.dtype = model.dtype
        codec = self.model.audio_encoder.config
        self.sample_rate = int(codec.sampling_rate)
        self.hop = int(np.prod(codec.upsampling_ratios))  # samples per codec frame
        self.frame_rate = self.sample_rate / self.hop
        self.codebooks = int(self.model.decoder.num_codebooks)
        self.channels = int(self.model.decoder.config.audio_channels)
        # Decoding steps lost to the codebook delay pattern: codebook k of a channel lags k steps
        # (stereo checkpoints interleave left/right codebooks, which share a delay).
        self.delay = self.codebooks // self.channels - 1
        self.generate_calls = 0
        # Most tracks per generate call as measured at load, after the weights are on the
        # device: the worker tells the coordinator, which hands this engine no more per call.
        self.load_limit = (
            auto_batch_limit(self.model, self.device, spec.batch_size)
            if spec.batch_auto
            else max(1, spec.batch_size)
        )
        # `batch_size: auto` on CUDA: each batch within a call is sized again, just before it.
        self.sizer: AutoBatch | None = (
            AutoBatch.for_model(self.model, self.device, max(1, spec.batch_size))
            if spec.batch_auto and self.device.type == "cuda"
            else None
        )

    # -- public -------------------------------------------------------------------------------

    def render(
        self, requests: Sequence[RenderRequest], progress: ProgressFn
    ) -> list[RenderResult | EngineError]:
        results: list[RenderResult | EngineError | None] = [None] * len(requests)
        groups: dict[tuple[int, Sampling], list[_Job]] = {}
        for index, request in enumerate(requests):
            try:
                job = self._job(index, request)
            except EngineError as exc:
                results[index] = exc
                continue
            groups.setdefault(job.group, []).append(job)
        for jobs in groups.values():
            start = 0
            while start < len(jobs):
                batch = jobs[start : start + self._next_batch_size()]
                for job, result in zip(batch, self._render_batch(batch, progress), strict=True):
                    results[job.index] = result
                start += len(batch)
        assert all(result is not None for result in results)
        return [result for result in results if result is not None]

    def close(self) -> None:
        del self.model
        free_memory(self.device)

    # -- batches ------------------------------------------------------------------------------

    @property
    def batch_limit(self) -> int:
        """Most tracks per call, as the worker reports it to the coordinator: at load, and
        again after a call whenever it changed (with `auto` on CUDA, what the device holds now
        by its free memory and the peak measured; without, the figure from load)."""
        return self._next_batch_size()

    def _next_batch_size(self) -> int:
        return self.sizer.next_size() if self.sizer is not None else self.load_limit

    def _measured(
        self, jobs: list[_Job], total_frames: int
    ) -> contextlib.AbstractContextManager[None]:
        """Batches shaped like what the sizer's figure describes (a full 30 s window with
        guidance) teach it their peak; shorter or unguided ones would understate a track."""
        full = total_frames >= round(WINDOW_S * self.frame_rate)
        if self.sizer is None or not full or not jobs[0].sampling.guidance:
            return contextlib.nullcontext()
        return self.sizer.measure(len(jobs))

    def _job(self, index: int, request: RenderRequest) -> _Job:
        params = {**self.spec.params, **request.params}
        duration = request.duration_s
        if duration is None:
            duration = _number(params, "duration_s", DEFAULT_DURATION_S)
        if not math.isfinite(duration) or duration <= 0:
            raise EngineError(f"job {request.key}: duration_s must be > 0", retryable=False)
        sampling = sampling_from(params, self.model.generation_config)
        return _Job(index, request, round(duration * self.sample_rate), sampling)

    def _render_batch(
        self, jobs: list[_Job], progress: ProgressFn
    ) -> list[RenderResult | EngineError]:
        """Render `jobs` together; on out-of-memory, halve and retry each half."""
        try:
            return self._render_together(jobs, progress)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        # Retried outside the except block: the traceback would pin the failed batch's tensors.
        free_memory(self.device)
        if len(jobs) == 1:
            # Windows bound a track's memory, so this is other tenants of the device, not the
            # track: set aside uncharged (transient), tried again later or by the next run.
            message = f"job {jobs[0].request.key}: out of memory on {self.device} even alone"
            return [EngineError(message, transient=True)]
        half = len(jobs) // 2
        return self._render_batch(jobs[:half], progress) + self._render_batch(jobs[half:], progress)

    def _render_together(
        self, jobs: list[_Job], progress: ProgressFn
    ) -> list[RenderResult | EngineError]:
        started = time.perf_counter()
        sampling, samples = jobs[0].sampling, jobs[0].samples
        total_frames = -(-samples // self.hop)
        windows = plan_windows(
            total_frames,
            round(WINDOW_S * self.frame_rate),
            round(sampling.stride_s * self.frame_rate),
        )
        # Fresh generators per attempt: an OOM retry must replay the same draws.
        sampler = _Sampler(sampling, [self._generator(job) for job in jobs], self.codebooks)
        _seed_globals(jobs[0].request.seed)
        text = self.processor(
            text=[job.request.text for job in jobs], padding=True, return_tensors="pt"
        ).to(self.device)
        audio = np.zeros((len(jobs), self.channels, total_frames * self.hop), dtype=np.float32)
        made = 0  # samples written so far
        codes: torch.Tensor | None = None  # (batch, codebooks, frames): the last window's codes
        with self._measured(jobs, total_frames):
            for number, window in enumerate(windows):
                prompt = None
                if window.prompt_frames:
                    assert codes is not None  # only the first window has no prompt
                    prompt = codes[:, :, -window.prompt_frames :]
                last = number == len(windows) - 1
                out, codes = self._generate(
                    dict(text), prompt, window.new_frames, sampler, progress, keep_codes=not last
                )
                made = self._place(audio, out, made, window.prompt_frames * self.hop)
        seconds = time.perf_counter() - started
        return [
            self._result(job, audio[row, :, :samples], len(windows), len(jobs), seconds)
            for row, job in enumerate(jobs)
        ]

    def _generate(
        self,
        inputs: dict[str, Any],
        prompt: torch.Tensor | None,
        new_frames: int,
        sampler: _Sampler,
        progress: ProgressFn,
        *,
        keep_codes: bool,
    ) -> tuple[npt.NDArray[np.float32], torch.Tensor | None]:
        """One generate() call, continuing `prompt` (codes, (batch, codebooks, frames)) if any.

        Returns (batch, channels, (prompt + new) frames * hop) float32 audio and, with
        `keep_codes`, the codes generate() decoded it from, (batch, codebooks, prompt + new
        frames), so the next window can be prompted with them as they are.
        """
        prompt_frames = 0 if prompt is None else int(prompt.shape[-1])
        if prompt is not None:
            # What generate() makes of an audio prompt after EnCodec's encode: one row per
            # (track, codebook), stereo's left/right codebooks interleaved as they were decoded.
            inputs["decoder_input_ids"] = prompt.reshape(-1, prompt_frames)
        config = self._generation_config(sampler.sampling, new_frames)
        processors = LogitsProcessorList([_Heartbeat(progress), sampler])
        self.generate_calls += 1
        codec = self.model.audio_encoder
        with torch.inference_mode(), _quiet(), _decoded_codes(codec, keep_codes) as decoded:
            out = self.model.generate(
                **inputs, generation_config=config, logits_processor=processors
            )
        assert isinstance(out, torch.Tensor)
        expected = (prompt_frames + new_frames) * self.hop
        if out.shape[-1] != expected:
            raise EngineError(f"musicgen returned {out.shape[-1]} samples, expected {expected}")
        frames = prompt_frames + new_frames
        codes = self._codes(decoded, out.shape[0], frames) if keep_codes else None
        result: npt.NDArray[np.float32] = out.float().cpu().numpy()
        return result, codes

    def _codes(self, decoded: list[torch.Tensor], batch: int, frames: int) -> torch.Tensor:
        """The codes generate() handed EnCodec's decode, as (batch, codebooks, frames): mono
        checkpoints decode once; stereo ones decode the even (left) codebooks, then the odd
        (right) ones, which are interleaved back here."""
        shape = (1, batch, self.codebooks // self.channels, frames)
        if len(decoded) != self.channels or any(tuple(c.shape) != shape for c in decoded):
            # transformers changed how generate() decodes: fail loudly rather than drift.
            got = [tuple(c.shape) for c in decoded]
            raise RuntimeError(f"musicgen decoded codes {got}, expected {self.channels} x {shape}")
        # (batch, codebooks per channel, channels, frames) -> left0, right0, left1, right1, ...
        return torch.stack([c[0] for c in decoded], dim=2).reshape(batch, self.codebooks, frames)

    def _generation_config(self, sampling: Sampling, new_frames: int) -> GenerationConfig:
        """Greedy from generate()'s point of view: `_Sampler` has already chosen each token.

        generate() fills every None here from the checkpoint's config, so guidance off must be an
        explicit 1.0 (musicgen guides only above 1; below 1 transformers would add another kind
        of guidance), and top_k/top_p/temperature may be filled in but go unused when greedy.
        """
        overrides = {
            "do_sample": False,
            # seconds * 50 + 3 for the 4-codebook checkpoints
            "max_new_tokens": new_frames + self.delay,
            "guidance_scale": sampling.guidance_scale if sampling.guidance else 1.0,
        }
        with _quiet():
            return GenerationConfig.from_dict(
                {**self.model.generation_config.to_dict(), **overrides}
            )

    def _place(
        self, audio: npt.NDArray[np.float32], out: npt.NDArray[np.float32], made: int, prompt: int
    ) -> int:
        """Write a window's new audio after `made` samples; return the new total.

        Over the last few ms before the join, fade from what we had into this window's decode of
        the same prompt codes: that decode runs straight into the new part with no edge, while the
        previous window's tail was decoded without anything after it.
        """
        new = out[:, :, prompt:]
        audio[:, :, made : made + new.shape[-1]] = new
        fade = min(prompt, round(_CROSSFADE_S * self.sample_rate))
        if fade:
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            tail = audio[:, :, made - fade : made]
            tail += (out[:, :, prompt - fade : prompt] - tail) * ramp
        return made + int(new.shape[-1])

    def _result(
        self,
        job: _Job,
        audio: npt.NDArray[np.float32],
        windows: int,
        batch: int,
        seconds: float,
    ) -> RenderResult | EngineError:
        if not np.isfinite(audio).all():
            hint = "; try dtype: float32" if self.dtype != torch.float32 else ""
            return EngineError(f"job {job.request.key}: non-finite audio{hint}", retryable=False)
        # (channels, samples) -> (samples,) for mono, (samples, channels) otherwise
        shaped = audio[0] if self.channels == 1 else audio.T
        info: dict[str, Any] = {
            "engine": "musicgen",
            "model": self.spec.model,
            "windows": windows,
            "batch": batch,
            "seconds": round(seconds, 3),
            "device": str(self.device),
        }
        if job.request.lyrics:
            info["lyrics_ignored"] = True
        clipped = np.clip(shaped, -1.0, 1.0).astype(np.float32, copy=False)
        return RenderResult(
            audio=np.ascontiguousarray(clipped), sample_rate=self.sample_rate, info=info
        )

    def _generator(self, job: _Job) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(job.request.seed % 2**64)
        return generator


# ---------------------------------------------------------------------------------------------
# Loading and helpers


def _dtype(params: dict[str, Any], device: torch.device) -> torch.dtype:
    name = params.get("dtype", "float16")
    if name not in _DTYPES:
        raise EngineUnavailable(
            f"musicgen: params dtype must be one of {', '.join(_DTYPES)}, got {name!r}"
        )
    # Half precision on a CPU is slow or unsupported for some ops.
    return _DTYPES[str(name)] if device.type == "cuda" else torch.float32


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "~")) or os.path.isabs(model) or os.path.exists(model)


def _load(
    model: str, device: torch.device, dtype: torch.dtype
) -> tuple[MusicgenForConditionalGeneration, ProcessorMixin]:
    """Cache (or a local folder) first: no network request at all when the weights are here."""
    if _looks_like_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise _unavailable(model, "no such folder")
        return _from_pretrained(str(folder), device, dtype, local_only=True)
    try:
        return _from_pretrained(model, device, dtype, local_only=True)
    except OSError:
        pass  # not in the cache: let the hub download it if there is a network
    return _from_pretrained(model, device, dtype, local_only=False)


def _from_pretrained(
    model: str, device: torch.device, dtype: torch.dtype, *, local_only: bool
) -> tuple[MusicgenForConditionalGeneration, ProcessorMixin]:
    try:
        with _quiet():
            network = MusicgenForConditionalGeneration.from_pretrained(
                model, dtype=dtype, local_files_only=local_only
            )
            processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
                model, local_files_only=local_only
            )
    except OSError as exc:  # also huggingface_hub's "not cached and no network" errors
        if local_only and not _looks_like_path(model):
            raise
        raise _unavailable(model, str(exc).splitlines()[0]) from exc
    network.to(device)  # type: ignore[arg-type]  # transformers types .to() for nn.Module only
    network.train(False)  # eval mode: no dropout
    return network, processor


def _unavailable(model: str, why: str) -> EngineUnavailable:
    from huggingface_hub import constants

    return EngineUnavailable(
        f"musicgen weights {model!r} not found ({why}): download them into the Hugging Face cache"
        f" ({constants.HF_HUB_CACHE}) with network access, set the profile's `model:` to a"
        " local folder, or use --profile offline|replicate"
    )


# ---------------------------------------------------------------------------------------------
# Batch size from free memory

# On a CPU batching buys little (it is compute bound) and big batches leave other workers idle.
CPU_AUTO_BATCH = 4
# Share of the free memory a batch may plan to use: the allocator fragments, and until a batch
# has been measured the estimate below is a model of the big tensors, not a measurement.
MEMORY_HEADROOM = 0.8
# On top of a measured per-track peak: the next batch's prompts may pad to more text tokens, and
# the allocator rounds blocks up.
PEAK_MARGIN = 1.1
# Text tokens a prompt is padded to in its batch (T5 tokens; a one-line prompt has 10-40): the
# decoder's cross-attention caches keys and values for each.
_TEXT_TOKENS = 64
# Live copies of EnCodec's full-rate activation (num_filters channels at the sample rate) at its
# decode's peak, counted in transformers' EncodecDecoder: in the last upsampling stage's residual
# block the input (kept for the skip), its ELU and the reflect-padded copy the convolution reads
# are alive together with half-width output: 3.5, rounded up for the convolution's workspace.
# generate() decodes with the KV cache still alive (its prefill output holds the cache), so
# this adds to the cache rather than following it.
_CODEC_COPIES = 4


def _window_frames(decoder: PretrainedConfig, codec: PretrainedConfig) -> int:
    """Decoding steps of one 30 s window: codec frames (sample rate / hop, 50 Hz for MusicGen's
    32 kHz EnCodec with hop 8*5*4*4 = 640) plus the codebook delay pattern's extra steps."""
    hop = int(np.prod(codec.upsampling_ratios))
    return int(WINDOW_S * codec.sampling_rate) // hop + int(decoder.num_codebooks)


def kv_cache_bytes(
    decoder: PretrainedConfig, codec: PretrainedConfig, dtype_bytes: int, *, guidance: bool = True
) -> int:
    """One track's self-attention cache at the end of a 30 s window: a key and a value (2) per
    layer and step, each hidden_size wide (MusicGen's attention is plain multi-head: as many
    key/value heads as query heads, head_dim * num_attention_heads == hidden_size), for 2 rows
    with classifier-free guidance (the prompt's and the unconditional one). MusicGen small /
    medium / large in fp16: 0.30 / 0.89 / 1.18 GB, as measured."""
    rows = 2 if guidance else 1
    layers, hidden = int(decoder.num_hidden_layers), int(decoder.hidden_size)
    return 2 * layers * _window_frames(decoder, codec) * hidden * dtype_bytes * rows


def track_bytes(decoder: PretrainedConfig, codec: PretrainedConfig, dtype_bytes: int) -> int:
    """Device memory one more track in a batch costs for one 30 s window with guidance (the
    engine's default): the KV cache (`kv_cache_bytes`), the small terms that live alongside it,
    and EnCodec's full-rate activations while generate() decodes the window. (The cache was
    counted right before; what made the model 2-3x too high was 1.5x the cache again for
    activations, which for one decoding step are a few MB, not proportional to the cache.)"""
    rows = 2  # guidance
    layers, hidden = int(decoder.num_hidden_layers), int(decoder.hidden_size)
    steps = _window_frames(decoder, codec)
    cross = 2 * layers * _TEXT_TOKENS * hidden * rows  # cross-attention keys and values
    # The cache grows by torch.cat: the layer being extended exists twice for a moment.
    growth = steps * hidden * rows
    # A continuation window's prefill logits (all prompt positions, every codebook) stay
    # referenced until generate() returns: default prompt of 30 - 18 = 12 s.
    prompt_steps = _window_frames(decoder, codec) * (WINDOW_S - DEFAULT_STRIDE_S) / WINDOW_S
    logits = rows * int(decoder.num_codebooks) * int(prompt_steps) * int(decoder.vocab_size)
    # The codec is mono (stereo checkpoints decode left and right one after the other).
    codec_bytes = _CODEC_COPIES * int(WINDOW_S * codec.sampling_rate) * int(codec.num_filters)
    rest = (cross + growth + logits + codec_bytes) * dtype_bytes
    return kv_cache_bytes(decoder, codec, dtype_bytes) + rest


def batch_that_fits(free_bytes: int, per_track: int, ceiling: int) -> int:
    return max(1, min(ceiling, int(free_bytes * MEMORY_HEADROOM) // max(1, per_track)))


def available_bytes(device: torch.device) -> int:
    """What a batch may use on a CUDA device: the driver's free memory plus what torch's caching
    allocator holds with no tensor in it (an earlier batch's blocks: the driver counts them as
    taken, but this process reuses them)."""
    free, _total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free) + max(0, int(cached))


def auto_batch_limit(
    model: MusicgenForConditionalGeneration, device: torch.device, ceiling: int
) -> int:
    """`batch_size: auto` at load: as many tracks as the free memory holds, measured with the
    weights already loaded. Out of memory still halves a batch, so an estimate on the high side
    costs one retry, not the job."""
    if device.type != "cuda":
        return min(ceiling, CPU_AUTO_BATCH)
    return AutoBatch.for_model(model, device, ceiling).next_size()


class AutoBatch:
    """`batch_size: auto` on a CUDA device, batch by batch: each is sized from the memory free
    just before it, so another tenant taking memory mid-run shrinks the next batch instead of
    costing out-of-memory retries. The cost of a track is the model (`track_bytes`) until a batch
    has been measured, then that batch's peak per track, times `PEAK_MARGIN`, but never under
    the KV cache alone (`floor`), which a full window cannot do without."""

    def __init__(self, device: torch.device, ceiling: int, modelled: int, floor: int) -> None:
        self.device = device
        self.ceiling = ceiling  # the profile's batch_size: never more per batch
        self.modelled = modelled
        self.floor = floor
        self.measured: int | None = None  # peak bytes per track of the last measured batch

    @classmethod
    def for_model(
        cls, model: MusicgenForConditionalGeneration, device: torch.device, ceiling: int
    ) -> AutoBatch:
        dtype_bytes = torch.finfo(model.dtype).bits // 8
        decoder, codec = model.decoder.config, model.audio_encoder.config
        modelled = track_bytes(decoder, codec, dtype_bytes)
        return cls(device, ceiling, modelled, kv_cache_bytes(decoder, codec, dtype_bytes))

    def per_track(self) -> int:
        if self.measured is None:
            return self.modelled
        return max(self.floor, math.ceil(self.measured * PEAK_MARGIN))

    def next_size(self) -> int:
        return batch_that_fits(available_bytes(self.device), self.per_track(), self.ceiling)

    @contextlib.contextmanager
    def measure(self, tracks: int) -> Iterator[None]:
        """Around all of a batch's windows: its peak above what was allocated before it, per
        track. The windows run one after another and free what they held, so the peak is one
        window's (the first, full one) and needs no dividing by their number. A batch that
        raises (out of memory) teaches nothing."""
        before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        yield
        peak = torch.cuda.max_memory_allocated(self.device) - before
        self.measured = max(0, peak) // max(1, tracks)


@contextlib.contextmanager
def _decoded_codes(codec: Any, capture: bool) -> Iterator[list[torch.Tensor]]:
    """While the block runs, record what is handed to `codec.decode` (an EncodecModel; Any
    because nn.Module types its attributes as tensors or modules). MusicGen's generate() ends
    by decoding the un-delayed codes of prompt + new frames (left, then right for stereo) and
    returns only the audio: this is where the codes themselves can be had. The wrapper is an
    instance attribute, removed afterwards (or the one it shadowed put back)."""
    decoded: list[torch.Tensor] = []
    if not capture:
        yield decoded
        return
    attributes = vars(codec)
    shadowed = attributes.get("decode")
    real = codec.decode

    def decode(audio_codes: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        decoded.append(audio_codes)
        return real(audio_codes, *args, **kwargs)

    attributes["decode"] = decode
    try:
        yield decoded
    finally:
        if shadowed is None:
            attributes.pop("decode", None)
        else:
            attributes["decode"] = shadowed


def _seed_globals(seed: int) -> None:
    """Our sampler uses its own generators; this pins anything else that might draw."""
    torch.manual_seed(seed % 2**64)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed % 2**64)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No transformers/hub warnings, retries or progress bars: the library never prints."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    bars = hf_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
