"""A job's request -> a model's input, as the profile's `inputs` table says. Plain data in and
out, so the same input is built again after a crash (reconciliation matches on it)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from songbatch.profiles import RemoteModel

_CASTS: dict[str, Callable[[Any], Any]] = {
    "int": lambda v: round(float(v)),
    "float": float,
    "str": str,
    "bool": bool,
}


class InputError(ValueError):
    """The job cannot be sent to this model as it is (a limit, a missing voice)."""


def model_input(
    model: RemoteModel, request: dict[str, Any], voice_url: str | None
) -> dict[str, Any]:
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


def _source(source: str, request: dict[str, Any], voice_url: str | None) -> Any:
    path, _, cast = source.partition("|")
    value = _lookup(path, request, voice_url)
    if value is None or not cast:
        return value
    if cast not in _CASTS:
        raise InputError(f"unknown cast {cast!r} in input source {source!r}")
    return _CASTS[cast](value)


def _lookup(path: str, request: dict[str, Any], voice_url: str | None) -> Any:
    if path == "voice":
        return voice_url
    if path == "duration":
        seconds = request.get("duration_s")
        return None if seconds is None else max(1, math.ceil(float(seconds) - 1e-9))
    if path == "language":
        return (request.get("params") or {}).get("language")
    if path.startswith("params."):
        return (request.get("params") or {}).get(path.removeprefix("params."))
    if path in ("text", "lyrics", "seed", "duration_s"):
        return request.get(path)
    raise InputError(f"unknown input source {path!r}")


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
