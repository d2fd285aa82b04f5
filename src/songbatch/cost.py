"""Prices of remote predictions: the worst case a job may cost (what the budget reserves before a
create) and what a finished prediction cost (what the reservation settles at).

A per-second model is cancelled once its predict time reaches the estimate times `worst_factor`;
the reservation adds `cancel_grace_s` for the poll interval and the cancel's own latency, so the
bill of a prediction that is cancelled in time never exceeds its reservation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from songbatch.engines.base import JobRequest
from songbatch.profiles import RemoteModel, ReplicateConfig


@dataclass(frozen=True)
class Reservation:
    """What one create may cost at most, and the predict time after which it is cancelled."""

    usd: float
    cancel_after_s: float  # predict seconds; past this the prediction is cancelled
    reserved_s: float  # cancel_after_s + grace: the predict time the amount covers


def expected_predict_s(model: RemoteModel, audio_s: float) -> float:
    return model.predict.base_s + model.predict.per_audio_s * max(0.0, audio_s)


def remote_model_name(config: ReplicateConfig, kind: str, model: str, request: JobRequest) -> str:
    """Which of the profile's models a job goes to: songs with lyrics to `lyrics_model`. The
    executor and `songbatch cost` both ask here, so an estimate prices the model that runs."""
    if kind == "music" and request.lyrics and config.lyrics_model:
        return config.lyrics_model
    return model


def expected_cost(
    config: ReplicateConfig,
    model: RemoteModel,
    model_input: dict[str, Any],
    audio_s: float,
    *,
    predict_s: float | None = None,
) -> float:
    """What a prediction is expected to cost: the bill `settled_cost` would write for a
    successful prediction that ran `predict_s` (default: the profile's expected predict time).
    The same function settles real predictions, so an estimate and a bill cannot disagree on
    the rule, only on the predict time."""
    seconds = expected_predict_s(model, audio_s) if predict_s is None else predict_s
    return settled_cost(
        config,
        model,
        model_input,
        succeeded=True,
        predict_s=seconds,
        reserved_usd=worst_case(config, model, model_input, audio_s).usd,
    )


def worst_case(
    config: ReplicateConfig, model: RemoteModel, model_input: dict[str, Any], audio_s: float
) -> Reservation:
    cancel_after = expected_predict_s(model, audio_s) * model.predict.worst_factor
    reserved_s = cancel_after + config.cancel_grace_s
    rule = model.price
    if rule.per == "second":
        usd = reserved_s * _hardware_price(config, model)
    elif rule.per == "1k_chars":
        usd = _chars(model_input, rule.chars_from) / 1000 * float(rule.usd or 0.0)
    else:
        usd = float(rule.usd or 0.0)
    return Reservation(usd=_round_up(usd), cancel_after_s=cancel_after, reserved_s=reserved_s)


def settled_cost(
    config: ReplicateConfig,
    model: RemoteModel,
    model_input: dict[str, Any],
    *,
    succeeded: bool,
    predict_s: float | None,
    reserved_usd: float,
) -> float:
    """What a finished prediction cost. Per-second models bill their predict time whatever the
    outcome; without a reported predict time the reservation is kept (the worst case). Per-output
    and per-character models bill successful predictions only."""
    rule = model.price
    if rule.per == "second":
        if predict_s is None:
            return reserved_usd
        return _round_up(predict_s * _hardware_price(config, model))
    if not succeeded:
        return 0.0
    if rule.per == "1k_chars":
        return _round_up(_chars(model_input, rule.chars_from) / 1000 * float(rule.usd or 0.0))
    return float(rule.usd or 0.0)


def _hardware_price(config: ReplicateConfig, model: RemoteModel) -> float:
    return config.hardware_usd_per_s[str(model.price.hardware)]


def _chars(model_input: dict[str, Any], field: str) -> int:
    value = model_input.get(field)
    return len(value) if isinstance(value, str) else 0


def _round_up(usd: float) -> float:
    """Whole micro-dollars, rounded up: sums in SQL stay exact enough and never undercount."""
    return math.ceil(usd * 1_000_000 - 1e-6) / 1_000_000
