"""A job's request -> a model's input, as the profile's `inputs` table says. Plain data in and
out, so the same input is built again after a crash (reconciliation matches on it)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import create_model

from songbatch.engines.base import JobRequest
from songbatch.engines.params import EngineParams, SpeechParams

if TYPE_CHECKING:  # profiles imports this module to check its `inputs` tables
    from songbatch.profiles import RemoteModel

_CASTS: dict[str, Callable[[Any], Any]] = {
    "int": lambda v: round(float(v)),
    "float": float,
    "str": str,
    "bool": bool,
}
_PLAIN_SOURCES = ("text", "lyrics", "seed", "duration", "duration_s", "voice", "language")
_PARAMS = "params."
_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# What a param may be, by the cast its input applies: numbers for int/float (the cast rounds),
# true/false for bool; any single value otherwise (sent as written, or as text for `|str`).
_SCALAR = str | int | float | bool
_PARAM_TYPES: dict[str, Any] = {
    "int": float,
    "float": float,
    "bool": bool,
    "str": _SCALAR,
    "": _SCALAR,
}


class InputError(ValueError):
    """The job cannot be sent to this model as it is (a limit, a missing voice)."""


def model_input(model: RemoteModel, request: JobRequest, voice_url: str | None) -> dict[str, Any]:
    """Sources: text, lyrics, seed, duration (whole seconds, rounded up), duration_s, voice,
    language, params.NAME; a `|int`/`|float` suffix casts. Absent values are left out, so the
    model's own default applies."""
    values: dict[str, Any] = dict(model.fixed)
    for name, source in model.inputs.items():
        value = _source(source, request, voice_url)
        if value is not None:
            values[name] = value
    _check_limits(model, values)
    return values


def _source(source: str, request: JobRequest, voice_url: str | None) -> Any:
    path, _, cast = source.partition("|")
    value = _lookup(path, request, voice_url)
    if value is None or not cast:
        return value
    if cast not in _CASTS:
        raise InputError(f"unknown cast {cast!r} in input source {source!r}")
    return _CASTS[cast](value)


def _lookup(path: str, request: JobRequest, voice_url: str | None) -> Any:
    if path == "voice":
        return voice_url
    if path == "duration":
        seconds = request.duration_s
        return None if seconds is None else max(1, math.ceil(float(seconds) - 1e-9))
    if path == "language":
        return request.params.get("language")
    if path.startswith("params."):
        return request.params.get(path.removeprefix("params."))
    plain: dict[str, Any] = {
        "text": request.text,
        "lyrics": request.lyrics,
        "seed": request.seed,
        "duration_s": request.duration_s,
    }
    if path in plain:
        return plain[path]
    raise InputError(f"unknown input source {path!r}")


def source_problem(source: str) -> str | None:
    """Why an `inputs` source cannot be read (checked when the profile loads), or None."""
    path, _, cast = source.partition("|")
    if cast and cast not in _CASTS:
        return f"unknown cast {cast!r} in {source!r}; use one of {', '.join(_CASTS)}"
    if path in _PLAIN_SOURCES:
        return None
    if path.startswith(_PARAMS) and _PARAM_NAME.fullmatch(path.removeprefix(_PARAMS)):
        return None
    known = ", ".join([*_PLAIN_SOURCES, "params.NAME"])
    return f"unknown input source {path!r}; known: {known}"


def param_casts(models: Iterable[RemoteModel]) -> dict[str, str]:
    """The `params.NAME` the models' inputs read, each with its cast ('' for none)."""
    casts: dict[str, str] = {}
    for model in models:
        for source in model.inputs.values():
            path, _, cast = source.partition("|")
            if path.startswith(_PARAMS):
                casts.setdefault(path.removeprefix(_PARAMS), cast)
    return casts


def params_model(models: Iterable[RemoteModel], *, speech: bool) -> type[EngineParams]:
    """What a job's params may hold for these models: exactly the names their inputs read, typed
    by their casts; null leaves the input out. Speech jobs also carry `language`."""
    fields: dict[str, Any] = {
        name: (_PARAM_TYPES.get(cast, _SCALAR) | None, None)
        for name, cast in param_casts(models).items()
    }
    if speech:
        fields.pop("language", None)  # SpeechParams has it
    base = SpeechParams if speech else EngineParams
    model: type[EngineParams] = create_model("RemoteParams", __base__=base, **fields)
    return model


def _check_limits(model: RemoteModel, values: dict[str, Any]) -> None:
    for name, (low, high) in ((n, (b[0], b[1])) for n, b in model.limits.items()):
        value = values.get(name)
        if value is None:
            continue
        length = len(str(value))
        if not low <= length <= high:
            raise InputError(
                f"{model.ref}: input {name!r} has {length} characters; the model takes {low}-{high}"
            )
