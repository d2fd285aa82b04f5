"""How predictions that do not succeed end, through the real `replicate` client against the fake
Replicate server (tests/helpers/fake_replicate.py) on a virtual clock.

Policy (executor.py `_finish` / `_watch`): a `failed` prediction is the model's error, not
retried; `aborted` and `canceled` (by someone else) say nothing about the job, so it goes back to
pending and is retried up to `max_attempts`; a prediction still running when the time its
reservation covers runs out is cancelled by songbatch and the job fails `[over-time]`. Every
reservation is settled at what the prediction cost, never more than it reserved.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pydantic.v1
import pytest
from replicate.client import Client

from helpers.books import book_manifest
from helpers.fake_replicate import TOKEN, FakeReplicate, VirtualClock
from helpers.remote import remote_profile, render_virtual

TARGET = "0-2."  # the third sentence of chapter 1: the job whose predictions misbehave
MAX_ATTEMPTS = 3
PRICE = 0.001  # USD per predict second (remote_profile's gpu-t4)


def db(workspace: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(workspace / ".songbatch" / "ledger.db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def rows(workspace: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = db(workspace)
    try:
        return [dict(row) for row in conn.execute(sql, args)]
    finally:
        conn.close()


def target_job(workspace: Path) -> dict[str, Any]:
    jobs = [j for j in rows(workspace, "SELECT * FROM jobs") if TARGET in j["request"]]
    assert len(jobs) == 1
    return jobs[0]


def on_target(fault: str, times: int | None = None) -> Callable[[int, dict[str, Any]], str | None]:
    """A fault plan: `fault` for the target job's creates (the first `times`, or all)."""
    seen = 0

    def plan(index: int, model_input: dict[str, Any]) -> str | None:
        nonlocal seen
        if TARGET not in str(model_input.get("text")):
            return None
        seen += 1
        return fault if times is None or seen <= times else None

    return plan


def target_predictions(fake: FakeReplicate) -> list[Any]:
    return [p for p in fake.state.predictions.values() if TARGET in p.input["text"]]


@pytest.mark.parametrize(
    ("status", "fault", "error", "creates"),
    [
        # The model's own message, not retried.
        ("failed", "model-error", "[model-error] CUDA out of memory (fake model error)", 1),
        # Nothing wrong with the job: back to pending, retried until max_attempts.
        ("aborted", "aborted", "[aborted] the prediction was aborted", MAX_ATTEMPTS),
        ("canceled", "canceled", "[canceled] the prediction was canceled", MAX_ATTEMPTS),
    ],
)
def test_a_prediction_that_ends_failed_aborted_or_canceled_fails_its_job_with_the_reason(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: str,
    fault: str,
    error: str,
    creates: int,
) -> None:
    clock = VirtualClock()
    remote_profile(tmp_path, max_attempts=MAX_ATTEMPTS)
    manifest = book_manifest(
        tmp_path, chapters=1, sentences=5, formats="[flac]", profile="remote.yaml"
    )
    with FakeReplicate(clock, latency_s=2.0, faults=on_target(fault)) as fake:
        report = render_virtual(tmp_path, manifest, fake, clock, monkeypatch)
        predictions = target_predictions(fake)
        if status == "aborted":
            # The path under test: the real client's typed model rejects `aborted` (with
            # pydantic.v1's error: the client uses pydantic.v1 under pydantic 2).
            client = Client(api_token=TOKEN, base_url=fake.base_url)
            with pytest.raises((pydantic.ValidationError, pydantic.v1.ValidationError)):
                client.predictions.get(predictions[0].id)
        assert fake.state.cancels == 0  # it ended on its own
    assert report.exit_code == 1  # no crash: one job failed, with its reason
    assert len(predictions) == creates
    job = target_job(tmp_path)
    assert job["state"] == "failed"
    assert job["error"] == error
    assert job["failures"] == creates
    others = rows(tmp_path, "SELECT state FROM jobs WHERE key != ?", job["key"])
    assert [o["state"] for o in others] == ["done"] * 4
    # One attempt per create, each with the reason and the predict time it was billed.
    attempts = rows(tmp_path, "SELECT * FROM attempts WHERE job_key = ?", job["key"])
    assert [a["error"] for a in attempts] == [error] * creates
    assert all(a["predict_ms"] == 2000 for a in attempts)
    # Every reservation settled (none left open), at the predict time billed, within its amount.
    reserved = rows(tmp_path, "SELECT * FROM reservations ORDER BY id")
    assert len(reserved) == 4 + creates
    assert all(r["state"] == "settled" for r in reserved)
    assert all(r["settled_usd"] <= r["reserved_usd"] + 1e-9 for r in reserved)
    mine = [r for r in reserved if r["job_key"] == job["key"]]
    assert [r["outcome"] for r in mine] == [status] * creates
    assert {r["prediction_id"] for r in mine} == {p.id for p in predictions}
    assert all(r["settled_usd"] == pytest.approx(2.0 * PRICE) for r in mine)


@pytest.mark.parametrize("status", ["aborted", "canceled"])
def test_an_aborted_or_canceled_prediction_is_retried_and_the_job_then_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    clock = VirtualClock()
    remote_profile(tmp_path, max_attempts=MAX_ATTEMPTS)
    manifest = book_manifest(
        tmp_path, chapters=1, sentences=5, formats="[flac]", profile="remote.yaml"
    )
    with FakeReplicate(clock, latency_s=2.0, faults=on_target(status, times=1)) as fake:
        report = render_virtual(tmp_path, manifest, fake, clock, monkeypatch)
        predictions = target_predictions(fake)
    assert report.exit_code == 0, report.failed
    assert len(predictions) == 2
    job = target_job(tmp_path)
    assert job["state"] == "done" and job["failures"] == 1
    attempts = rows(tmp_path, "SELECT * FROM attempts WHERE job_key = ? ORDER BY token", job["key"])
    assert [a["error"] for a in attempts] == [f"[{status}] the prediction was {status}", None]
    mine = rows(tmp_path, "SELECT * FROM reservations WHERE job_key = ? ORDER BY id", job["key"])
    assert [(r["state"], r["outcome"]) for r in mine] == [
        ("settled", status),
        ("settled", "succeeded"),
    ]
    assert rows(tmp_path, "SELECT state FROM jobs WHERE state != 'done'") == []


# predict {base_s: 4, per_audio_s: 0, worst_factor: 3}: every job is cancelled after 12 predict
# seconds and reserves 12 + cancel_grace_s (2) = 14 s, i.e. $0.014 at $0.001/s.
CANCEL_AFTER_S = 12.0
RESERVED_USD = 0.014
JOBS = 4


@pytest.mark.parametrize(
    ("poll_s", "starting_s"),
    [
        (1.0, 0.0),
        (1.0, 3.0),  # queued 3 s first: polls see `starting`, then `processing`
        (5.0, 0.0),  # polls further apart than the grace: the cancel must still be in time
        (5.0, 3.0),
    ],
)
def test_a_prediction_running_past_its_reserved_time_is_cancelled_within_its_reservation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, poll_s: float, starting_s: float
) -> None:
    clock = VirtualClock()
    remote_profile(
        tmp_path,
        poll_s=poll_s,
        max_attempts=MAX_ATTEMPTS,
        predict="{base_s: 4, per_audio_s: 0, worst_factor: 3}",
    )
    manifest = book_manifest(
        tmp_path, chapters=1, sentences=JOBS, formats="[flac]", profile="remote.yaml"
    )
    cap = JOBS * RESERVED_USD  # room for every job's worst case and not a micro-dollar more
    committed: list[tuple[float, float, float]] = []  # (at, settled, open) after every step

    def sample() -> None:
        path = tmp_path / ".songbatch" / "ledger.db"
        if not path.exists():
            return
        conn = db(tmp_path)
        try:
            row = conn.execute(
                "SELECT COALESCE(SUM(CASE state WHEN 'settled' THEN settled_usd END), 0),"
                " COALESCE(SUM(CASE state WHEN 'open' THEN reserved_usd END), 0)"
                " FROM reservations"
            ).fetchone()
        finally:
            conn.close()
        committed.append((clock(), float(row[0]), float(row[1])))

    advance = clock.sleep

    def sleep(seconds: float) -> None:
        sample()
        advance(seconds)

    monkeypatch.setattr(clock, "sleep", sleep)  # render_virtual hands the executor clock.sleep
    fake = FakeReplicate(
        clock, latency_s=2.0, starting_s=starting_s, faults=on_target("stuck", times=1)
    )
    with fake:
        report = render_virtual(tmp_path, manifest, fake, clock, monkeypatch, max_spend=cap)
        [stuck] = target_predictions(fake)
        cancelled = list(fake.state.cancelled_ids)
    sample()
    # songbatch sent POST /v1/predictions/{id}/cancel for the stuck prediction, and only for it,
    # before its covered predict time ran out (cancel early, never late).
    assert cancelled == [stuck.id]
    assert stuck.canceled_at is not None
    ran_s = stuck.canceled_at - stuck.started
    assert 0 < ran_s <= CANCEL_AFTER_S
    # The job did not succeed from it: failed over time, not retried, nothing published.
    assert report.exit_code == 1
    job = target_job(tmp_path)
    assert job["state"] == "failed"
    assert job["error"].startswith("[over-time] cancelled: ran past the 12 s")
    assert job["failures"] == 1
    others = rows(tmp_path, "SELECT state FROM jobs WHERE key != ?", job["key"])
    assert [o["state"] for o in others] == ["done"] * (JOBS - 1)
    # Its reservation settled as canceled, at its predict time, within what it reserved.
    [mine] = rows(tmp_path, "SELECT * FROM reservations WHERE job_key = ?", job["key"])
    assert mine["state"] == "settled" and mine["outcome"] == "canceled"
    assert mine["prediction_id"] == stuck.id
    assert mine["reserved_usd"] == pytest.approx(RESERVED_USD)
    assert mine["settled_usd"] == pytest.approx(ran_s * PRICE, abs=2e-6)
    assert mine["settled_usd"] <= mine["reserved_usd"] + 1e-9
    assert all(r["state"] == "settled" for r in rows(tmp_path, "SELECT * FROM reservations"))
    # Settled + open never exceeded the cap, at any step of the run.
    assert len(committed) > CANCEL_AFTER_S / poll_s
    worst = max(settled + still_open for _, settled, still_open in committed)
    assert worst <= cap + 1e-9, committed
