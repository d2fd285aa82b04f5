"""What each engine reads from `params`, as typed models: checked at plan time, never at render.

One model per engine and kind, with exactly the names the engine module reads and the ranges
its library accepts. The models only *check*: the params a job carries (and so its key) stay the
mapping the user wrote, so valid params hash as they always did. This module imports pydantic
and nothing heavy, because `check_engine` and the planner run before any worker (and torch).

Sources of the ranges: chatterbox-tts 0.1.7's `generate` signatures and its Gradio demo's
sliders (exaggeration 0.25-2, CFG 0-1, temperature 0.05-5, min_p 0-1, top_p 0-1, repetition
penalty 1-2), transformers' logits warpers (temperature > 0, top_k >= 0, 0 < top_p <= 1),
espeak-ng's `speak_lib.h` (rate 80-450 words per minute, pitch 0-99), and the engines' own
checks (engines/musicgen.py `_check`, engines/chatterbox.py `QASettings`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from songbatch.yamlstrict import plain_message

# A music render shorter than this has no room for a single codec frame's worth of sound or
# a fade; the manifest's `duration` and the engines' `duration_s` share the bound.
MIN_MUSIC_S = 0.1
MAX_MUSIC_S = 3600.0

# chatterbox-tts 0.1.7 `chatterbox.mtl_tts.SUPPORTED_LANGUAGES`, copied so that checking a
# language never imports torch.
CHATTERBOX_LANGUAGES = frozenset(
    {"ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja"}
    | {"ko", "ms", "nl", "no", "pl", "pt", "ru", "sv", "sw", "tr", "zh"}
)
CHATTERBOX_VARIANTS = ("english", "turbo", "multilingual")
# The library stops every call at 1,000 speech tokens (25 per second): 40 s of audio. A chunk
# whose text needs longer always "runs to the cap" and fails QA (engines/chatterbox.py).
CHATTERBOX_MAX_RENDER_S = 39.5


class EngineParams(BaseModel):
    """Base: unknown names are refused; strict, so "0.5" (text) for a number is an error."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
    # Read once, from the profile, when the engine loads: a book or track setting one would
    # change its job key and nothing else.
    load_only: ClassVar[frozenset[str]] = frozenset()


def _integral(value: Any) -> Any:
    # The engines int() these, so 165.0 has always worked; 165.5 is refused.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_integral)]
Probability = Annotated[float, Field(ge=0, le=1)]
MusicSeconds = Annotated[float, Field(ge=MIN_MUSIC_S, le=MAX_MUSIC_S)]


class SpeechParams(EngineParams):
    # The planner puts the manifest's `language` into every speech job's params.
    language: str | None = None


# ---------------------------------------------------------------------------------- offline


class OfflineSpeechParams(SpeechParams):
    """engines/offline.py `OfflineSpeech` (espeak-ng clamps rate and pitch silently)."""

    voice: str | None = None  # an espeak-ng voice name; none: the language's voice
    rate: Annotated[WholeNumber, Field(ge=80, le=450)] | None = None  # words per minute
    pitch: Annotated[WholeNumber, Field(ge=0, le=99)] | None = None


class OfflineMusicParams(EngineParams):
    """engines/offline.py `OfflineMusic`: the length of a job that carries none."""

    duration_s: MusicSeconds = 30.0

    load_only = frozenset({"duration_s"})


# ------------------------------------------------------------------------------- chatterbox


def _variant(value: str) -> str:
    if value.lower() not in CHATTERBOX_VARIANTS:
        raise ValueError(
            f"unknown chatterbox variant {value!r}; known: {', '.join(CHATTERBOX_VARIANTS)}"
        )
    return value


class ChatterboxParams(SpeechParams):
    """engines/chatterbox.py `ChatterboxEngine` and the library's `generate` arguments."""

    variant: Annotated[str, AfterValidator(_variant)] = "english"
    watermark: bool = True
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    tf32: bool = True
    qa_min_ratio: Annotated[float, Field(ge=0)] = 0.5
    qa_max_ratio: Annotated[float, Field(gt=0)] = 2.0
    qa_retries: Annotated[WholeNumber, Field(ge=0, le=100)] = 2
    chars_per_second: Annotated[float, Field(gt=0)] = 14.0
    exaggeration: Annotated[float, Field(ge=0, le=2)] = 0.5
    cfg_weight: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0, le=5)] = 0.8
    min_p: Probability = 0.05
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    top_k: Annotated[WholeNumber, Field(ge=1)] = 1000  # turbo only
    repetition_penalty: Annotated[float, Field(ge=1, le=2)] = 1.2
    norm_loudness: bool = True  # turbo only
    max_new_tokens: Annotated[WholeNumber, Field(ge=1, le=1000)] = 1000

    load_only = frozenset({"variant", "watermark", "dtype", "tf32"})

    @model_validator(mode="after")
    def _qa_bounds(self) -> ChatterboxParams:
        if self.qa_min_ratio > self.qa_max_ratio:
            raise Conflict(
                ("qa_min_ratio", "qa_max_ratio"),
                f"qa_min_ratio {self.qa_min_ratio:g} is above qa_max_ratio"
                f" {self.qa_max_ratio:g}: every render would fail QA",
            )
        return self


# --------------------------------------------------------------------------------- musicgen


class MusicgenParams(EngineParams):
    """engines/musicgen.py `sampling_from`, `_check` and `_dtype`; null means the checkpoint's
    own generation_config value, as the engine reads it."""

    guidance_scale: Annotated[float, Field(ge=0)] | None = None  # <= 1: no guidance
    temperature: Annotated[float, Field(gt=0)] | None = None
    top_k: Annotated[WholeNumber, Field(ge=0)] | None = None  # 0: off
    top_p: Probability | None = None  # 0 or 1: off
    do_sample: bool | None = None
    extend_stride: Annotated[float, Field(gt=0, lt=30)] | None = None  # < the 30 s window
    duration_s: MusicSeconds | None = None
    dtype: Literal["float16", "bfloat16", "float32"] | None = None

    load_only = frozenset({"dtype"})


class Conflict(ValueError):
    """Two params that are fine alone but not together; `fields` names them."""

    def __init__(self, fields: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.fields = fields


# ---------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class ParamProblem:
    """What is wrong with a params mapping: `key` names the param to point at (None: the
    mapping as a whole); `fields` every param involved."""

    key: str | None
    fields: tuple[str, ...]
    message: str
    unknown: bool = False  # a name the engine does not read


def params_problem(
    model: type[EngineParams], params: Mapping[str, Any], *, also_known: Iterable[str] = ()
) -> ParamProblem | None:
    """The first problem of `params` for `model`, or None. A name the model does not read is
    refused with the closest one it does (or one of `also_known`, names other engines read)."""
    try:
        model.model_validate(dict(params))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        key = next((str(part) for part in err["loc"] if isinstance(part, str)), None)
        if err["type"] == "extra_forbidden" and key is not None:
            return ParamProblem(key, (key,), unknown_message(key, model, also_known), True)
        conflict = (err.get("ctx") or {}).get("error")
        if isinstance(conflict, Conflict):
            return ParamProblem(None, conflict.fields, str(conflict))
        return ParamProblem(key, (key,) if key else (), plain_message(err))
    return None


def unknown_message(name: str, model: type[BaseModel], also_known: Iterable[str] = ()) -> str:
    own = sorted(model.model_fields)
    message = f"unknown engine parameter {name!r}"
    close = difflib.get_close_matches(name, [*own, *also_known], n=1, cutoff=0.6)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message}; this engine reads: {', '.join(own) or 'none'}"


# ------------------------------------------------------------------------------- languages


def primary_language(language: Any) -> str:
    """`pt-BR` -> `pt`, `zh_Hant` -> `zh`; empty for none."""
    return str(language or "").split("-")[0].split("_")[0].lower()


def chatterbox_language_problem(variant: str, language: Any) -> str | None:
    """Why a chatterbox variant cannot speak `language` (mirrors the engine's own checks)."""
    primary = primary_language(language)
    if not primary:
        return None
    if variant.lower() == "multilingual":
        primary = "no" if primary in ("nb", "nn") else primary
        if primary in CHATTERBOX_LANGUAGES:
            return None
        return (
            f"chatterbox multilingual cannot speak {language!r}; it speaks"
            f" {', '.join(sorted(CHATTERBOX_LANGUAGES))}"
        )
    if primary == "en":
        return None
    return (
        f"chatterbox {variant.lower()} speaks English only, not {language!r}:"
        " use `variant: multilingual` in the profile's speech params"
    )


__all__ = [
    "CHATTERBOX_LANGUAGES",
    "CHATTERBOX_MAX_RENDER_S",
    "MAX_MUSIC_S",
    "MIN_MUSIC_S",
    "ChatterboxParams",
    "Conflict",
    "EngineParams",
    "MusicgenParams",
    "OfflineMusicParams",
    "OfflineSpeechParams",
    "ParamProblem",
    "SpeechParams",
    "chatterbox_language_problem",
    "params_problem",
    "primary_language",
    "unknown_message",
]
