"""Reservations a run left open (it was killed, or interrupted mid-create) are closed before new
work starts, so no job is paid for twice where the ledger could know about it.

- With a prediction id: fetch it. Finished: settle at its cost (a success is adopted: its output
  is downloaded and published instead of paying for the job again). Still running: adopted.
- Without one (killed between reserve and the reply of the create): list recent predictions and
  match model + input. Found: as above. Not found: the create never happened; settle at zero.
- What cannot be checked now (the API is unreachable) stays open and is reported; open
  reservations keep counting against the caps until a later run settles them. Its job, if
  pending, is handed to the executor with the reservation (Adopted), so the executor looks again
  (poll by id, or list) before it would create: never a second create for an unknown outcome.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from songbatch.cost import settled_cost
from songbatch.ledger import Ledger, OpenReservation
from songbatch.profiles import RemoteModel, ReplicateConfig
from songbatch.remote.calls import Gather, one_by_one
from songbatch.remote.client import Api, CallFailed, PredictionState

Note = Callable[[str, str], None]
# How far back to look for a create whose reply was lost, beyond its reservation time.
LIST_SLACK_S = 300.0


@dataclass(frozen=True)
class Adopted:
    """A prediction an earlier run created for a job still pending: poll it, don't create. With
    no prediction id, whether the create happened is still unknown: list before creating."""

    reservation_id: int
    prediction_id: str | None
    reserved_usd: float
    reserved_s: float
    reserved_at: float  # epoch seconds: the create came after, so running time is bounded by it


def same_model(ref: str, state: PredictionState) -> bool:
    owner_name, _, version = ref.partition(":")
    if version:
        return state.version == version
    return state.model == owner_name


def find_prediction(
    api: Api, ref: str, model_input: dict[str, Any], *, since: float
) -> PredictionState | None:
    """The newest prediction of this model with exactly this input, created after `since`."""
    for state in api.recent():
        if state.created_at is not None and state.created_at < since:
            return None
        if same_model(ref, state) and state.input == model_input:
            return state
    return None


def reconcile_open(
    ledger: Ledger,
    api: Api,
    config: ReplicateConfig,
    note: Note,
    gather: Gather[PredictionState | None] = one_by_one,
) -> dict[str, Adopted]:
    """The lookups (a GET each, or a list for a lost create) go out together through `gather`,
    HTTP only; what they found is applied here, one by one, on the ledger's thread."""
    adopted: dict[str, Adopted] = {}
    reservations = ledger.open_reservations()
    lookups = gather([functools.partial(_lookup, api, r) for r in reservations])
    for reservation, reply in zip(reservations, lookups, strict=True):
        try:
            found = reply.get()
        except CallFailed as exc:
            note("unreconciled", f"reservation {reservation.id} left open: {exc}")
            if _pending(ledger, reservation.job_key):
                adopted[reservation.job_key] = _adopt(reservation, reservation.prediction_id)
            continue
        if found is None:
            ledger.settle(reservation.id, usd=0.0, predict_ms=None, outcome="never-created")
            note("reconciled", f"reservation {reservation.id}: no prediction was created")
            continue
        if reservation.prediction_id is None:
            ledger.attach_prediction(reservation.id, found.id)
        if _pending(ledger, reservation.job_key) and found.status not in _UNUSABLE:
            adopted[reservation.job_key] = _adopt(reservation, found.id)
            note("reconciled", f"prediction {found.id} adopted for job {reservation.job_key[:12]}")
            continue
        try:
            _close(ledger, api, config, reservation, found, note)
        except CallFailed as exc:
            note("unreconciled", f"reservation {reservation.id} left open: {exc}")
    return adopted


_UNUSABLE = ("failed", "canceled", "aborted")


def _pending(ledger: Ledger, job_key: str) -> bool:
    job = ledger.job(job_key)
    return job is not None and job["state"] == "pending"


def _adopt(reservation: OpenReservation, prediction_id: str | None) -> Adopted:
    return Adopted(
        reservation.id,
        prediction_id,
        reservation.reserved_usd,
        reservation.reserved_s,
        _epoch(reservation.created_utc),
    )


def _lookup(api: Api, reservation: OpenReservation) -> PredictionState | None:
    if reservation.prediction_id is not None:
        return api.get(reservation.prediction_id)
    since = _epoch(reservation.created_utc) - LIST_SLACK_S
    return find_prediction(api, reservation.model, reservation.input, since=since)


def _close(
    ledger: Ledger,
    api: Api,
    config: ReplicateConfig,
    reservation: OpenReservation,
    state: PredictionState,
    note: Note,
) -> None:
    """A prediction nobody will use: settle it if it finished, else cancel it and leave the
    reservation open for the next run to settle at its real cost."""
    if not state.terminal:
        api.cancel(state.id)
        note("unreconciled", f"prediction {state.id} cancelled; its cost is settled next run")
        return
    model = _model(config, reservation.model)
    usd = reservation.reserved_usd
    if model is not None:
        usd = settled_cost(
            config,
            model,
            reservation.input,
            succeeded=state.status == "succeeded",
            predict_s=state.predict_s,
            reserved_usd=reservation.reserved_usd,
        )
    predict_ms = None if state.predict_s is None else round(state.predict_s * 1000)
    ledger.settle(reservation.id, usd=usd, predict_ms=predict_ms, outcome=state.status)
    note("reconciled", f"reservation {reservation.id} settled at ${usd:.4f} ({state.status})")


def _model(config: ReplicateConfig, ref: str) -> RemoteModel | None:
    return next((m for m in config.models.values() if m.ref == ref), None)


def _epoch(utc: str) -> float:
    return datetime.strptime(utc, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
