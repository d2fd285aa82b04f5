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
import os
import random
import re
import secrets
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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

from songbatch.engines.base import EngineSpec, ProgressFn, RenderRequest, RenderResult
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
_HUB_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.pt", "*.model"]
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class Variant:
    name: str
    repo_id: str
    files: tuple[str, ...]  # what the library's from_local reads (conds.pt is optional)
    ignored: frozenset[str] = frozenset()  # generation params it does not support


VARIANTS = {
    "english": Variant(
        "english",
        "ResembleAI/chatterbox",
        ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json"),
    ),
    # Turbo warns on (and ignores) CFG, min_p and exaggeration: they are not sent.
    "turbo": Variant(
        "turbo",
        "ResembleAI/chatterbox-turbo",
        ("ve.safetensors", "t3_turbo_v1.safetensors", "s3gen_meanflow.safetensors"),
        frozenset({"cfg_weight", "min_p", "exaggeration"}),
    ),
    "multilingual": Variant(
        "multilingual",
        "ResembleAI/chatterbox",
        ("ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", "grapheme_mtl_merged_expanded_v1.json"),
    ),
}


# ---------------------------------------------------------------------------------------------
# Loading


def load(spec: EngineSpec, device: str) -> ChatterboxEngine:
    """Engine factory named in the registry: the library's own loaders, on `device`."""
    variant = variant_of(spec)
    torch_device = _torch_device(device)
    _check_watermarker()
    model = _load_model(spec.model, variant, torch_device)
    return ChatterboxEngine(model, spec, torch_device)


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
            " pkg_resources): pip install 'setuptools<81'"
        )


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
        try:
            with quiet():
                return cls.from_local(folder, device)
        except Exception as exc:  # wrong variant's files, damaged or foreign weights
            raise EngineUnavailable(
                f"chatterbox {variant.name}: {folder} does not load as this variant's checkpoint"
                f" ({type(exc).__name__}: {_first_line(exc)})"
            ) from exc
    known = {v.repo_id for v in VARIANTS.values()}
    try:
        with quiet():
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


class ChatterboxEngine:
    """One loaded Chatterbox model: renders speech requests one at a time.

    Profile params (each overridable per book/chapter, except variant and dtype): `variant`,
    `watermark` (default true), `dtype` (`auto`: bf16 autocast for the T3 token loop on a
    bf16-capable GPU, float32 elsewhere; `float32`; `bfloat16`), `qa_min_ratio`, `qa_max_ratio`,
    `qa_retries`, `chars_per_second`, and the generation params `exaggeration`, `cfg_weight`,
    `temperature`, `min_p`, `top_p`, `top_k`, `repetition_penalty`, `norm_loudness` (each sent
    only where the variant's `generate` takes it).
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
        if not self.watermark:
            model.watermarker = _NoWatermark()
        self._builtin = model.conds  # the checkpoint's conds.pt voice, if it has one
        self._voices: OrderedDict[str, Any] = OrderedDict()
        self._conds_cls = _conds_class(model)
        self._accepted = frozenset(inspect.signature(model.generate).parameters)
        self.autocast_dtype = _autocast_dtype(str(spec.params.get("dtype", "auto")), device)
        if self.autocast_dtype is not None:
            _autocast_t3(model, device, self.autocast_dtype)

    @classmethod
    def from_model(cls, model: Any, spec: EngineSpec, device: str = "cpu") -> ChatterboxEngine:
        """Around a model already constructed (tests, benchmarks); `load` is the normal way."""
        return cls(model, spec, device)

    def render(
        self, requests: Sequence[RenderRequest], progress: ProgressFn
    ) -> list[RenderResult | EngineError]:
        results: list[RenderResult | EngineError] = []
        for request in requests:
            try:
                results.append(self._render_one(request, progress))
            except EngineError as exc:
                results.append(exc)
            except Exception as exc:  # one bad request fails its job, never the worker
                results.append(_engine_error(request, exc))
            progress()
        return results

    def close(self) -> None:
        self._voices.clear()
        self.model = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    # -- one request

    def _render_one(self, request: RenderRequest, progress: ProgressFn) -> RenderResult:
        text = request.text.strip()
        if not any(ch.isalnum() for ch in text):
            # Nothing to say; the library would read out "You need to add some text..." instead.
            silence = np.zeros(round(UNSPEAKABLE_S * self.sample_rate), dtype=np.float32)
            return RenderResult(silence, self.sample_rate, {"engine": "chatterbox", "silent": True})
        params = {**self.spec.params, **request.params}
        qa = QASettings.from_params(params, self.chars_per_second)
        kwargs = self._generation_kwargs(params)
        conds = self._conditionals(request.voice_path)
        progress()
        expected = qa.expected_s(text)
        ratios: list[float] = []
        for attempt in range(qa.retries + 1):
            seed = request.seed + attempt * SEED_STRIDE
            audio = self._generate(text, conds, kwargs, seed)
            progress()
            duration = audio.shape[0] / self.sample_rate
            ratios.append(duration / expected)
            problem = qa.problem(duration, ratios[-1])
            if problem is None and not np.isfinite(audio).all():
                problem = "non-finite samples"
            if problem is None:
                info = self._info(ratios[-1], len(ratios), seed, request.voice_path)
                return RenderResult(audio, self.sample_rate, info)
        tried = ", ".join(f"{r:.2f}" for r in ratios)
        raise EngineError(
            f"QA: {problem} after {len(ratios)} seeds (ratios {tried}; expected"
            f" {expected:.1f} s for {len(text)} characters)",
            retryable=False,
        )

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
        with quiet(), torch.inference_mode():
            wav = self.model.generate(text, **kwargs)
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
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        return EngineError(f"job {request.key}: out of GPU memory: {_first_line(exc)}")
    # Shape/value problems repeat on every attempt; anything else may be transient.
    retryable = not isinstance(exc, (ValueError, AssertionError, TypeError, KeyError))
    return EngineError(
        f"job {request.key}: chatterbox failed: {type(exc).__name__}: {_first_line(exc)}",
        retryable=retryable,
    )


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
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    for name in ("inference", "inference_turbo"):
        inner = getattr(model.t3, name, None)
        if inner is not None:
            setattr(model.t3, name, _with_autocast(inner, device_type, dtype))


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
