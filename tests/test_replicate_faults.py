"""1,000 jobs through the real client against the fake Replicate server with injected faults, on a
virtual clock shared by the executor and the fake (hours of backoff run in seconds).

Faults per create: 20 % 429 (half with Retry-After, half with the hint only in the body), 5 %
500/503, 3 % read timeouts, 1 % lost replies (created, reply dropped), 0.5 % model errors,
0.5 % 422 (the model refusing an input). The fake also enforces 600 creates per sliding 60 s
window on its own. (A 401 stops the whole run instead: test_replicate_outages.py.)
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers.books import book_manifest
from helpers.fake_replicate import FakeReplicate, VirtualClock
from helpers.remote import remote_profile, render_virtual
from songbatch.errors import RemoteRefused
from songbatch.ledger import Ledger

LIMIT = 600


def fault_plan(seed: int) -> Any:
    rng = random.Random(seed)

    def plan(index: int, model_input: dict[str, Any]) -> str | None:
        r = rng.random()
        for fault, upto in (
            ("429-header", 0.10),
            ("429-body", 0.20),
            ("500", 0.225),
            ("503", 0.25),
            ("timeout", 0.28),
            ("lost", 0.29),
            ("model-error", 0.295),
            ("422", 0.30),
        ):
            if r < upto:
                return fault
        return None

    return plan


@pytest.mark.slow
def test_a_thousand_jobs_under_faults_end_done_or_failed_with_their_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    remote_profile(
        tmp_path,
        rate=f"{{creates_per_min: {LIMIT}, burst: 10, concurrency: 48}}",
        poll_s=1.0,
        timeout_s=0.3,
        retry="{max_attempts: 8, base_s: 1, cap_s: 30, max_total_s: 7200}",
    )
    manifest = book_manifest(
        tmp_path, chapters=10, sentences=100, formats="[flac]", profile="remote.yaml"
    )
    fake = FakeReplicate(
        clock, latency_s=2.0, limit_per_min=LIMIT, faults=fault_plan(7), stall_s=0.8
    )
    with fake:
        report = render_virtual(tmp_path, manifest, fake, clock, monkeypatch, seed=3)
    state = fake.state
    outcomes = Counter(record.outcome for record in state.creates)
    # Every fault kind really happened.
    assert all(outcomes[kind] > 0 for kind in ("429-header", "429-body", "500", "503"))
    assert all(outcomes[kind] > 0 for kind in ("timeout", "lost", "model-error", "422"))
    # No create before the server's hint; never over the limit in any 60 s window.
    assert state.early_creates == 0
    assert state.throttled == 0 and state.max_in_window <= LIMIT
    # 422s and model errors are not retried: no later create of the same input.
    for i, record in enumerate(state.creates):
        if record.outcome in ("422", "model-error"):
            later = [r for r in state.creates[i + 1 :] if r.input_key == record.input_key]
            assert later == [], record
    # Lost replies were reconciled, not created again: nothing paid twice.
    assert max(fake.creates_by_input().values()) == 1
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        states = dict(ledger.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        errors = [
            row[0] for row in ledger.conn.execute("SELECT error FROM jobs WHERE state = 'failed'")
        ]
        open_reservations = ledger.open_reservations()
        burned = ledger.conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE state = 'done' AND failures > 0"
        ).fetchone()[0]
        set_aside = ledger.set_aside_jobs([info.id for info in ledger.manifests()])
    classes = Counter(error.split("]")[0] + "]" for error in errors)
    assert states.get("done", 0) + states.get("failed", 0) == 1000, states
    assert classes == {
        "[model-error]": outcomes["model-error"],
        "[http-422]": outcomes["422"],
    }
    assert open_reservations == []
    # Transient faults (throttling, 5xx, timeouts, lost replies) never charged an attempt and
    # left nothing set aside for another run.
    assert burned == 0 and set_aside == [] and report.set_aside == []
    assert report.exit_code == 1  # some jobs failed, with their reasons


@pytest.mark.parametrize("status", ["401", "403"])
def test_a_refused_token_stops_the_run_and_charges_no_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """A 401/403 is not the job's fault and every later call would meet it too: the run stops
    with one line (RemoteRefused, exit 1), no job is failed or charged, leases go back, and the
    refused create's reservation settles at zero (it surely did not happen)."""
    clock = VirtualClock()
    remote_profile(tmp_path, rate="{creates_per_min: 600, burst: 2, concurrency: 2}")
    manifest = book_manifest(
        tmp_path, chapters=1, sentences=6, formats="[flac]", profile="remote.yaml"
    )

    def plan(index: int, model_input: dict[str, Any]) -> str | None:
        return status if index >= 3 else None  # the token is revoked mid-run

    with FakeReplicate(clock, latency_s=2.0, faults=plan) as fake:
        with pytest.raises(RemoteRefused) as raised:
            render_virtual(tmp_path, manifest, fake, clock, monkeypatch)
        refused = [r for r in fake.state.creates if r.outcome == status]
    assert len(refused) == 1  # the first refusal stopped it
    message = str(raised.value)
    assert f"HTTP {status}" in message and "REPLICATE_API_TOKEN" in message
    assert "\n" not in message
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        jobs = [dict(row) for row in ledger.conn.execute("SELECT state, failures FROM jobs")]
        reservations = [dict(r) for r in ledger.conn.execute("SELECT * FROM reservations")]
        [run] = ledger.conn.execute("SELECT exit_code FROM runs").fetchall()
    assert {job["state"] for job in jobs} <= {"done", "pending"}
    assert all(job["failures"] == 0 for job in jobs)
    assert run[0] == 1
    never = [r for r in reservations if r["prediction_id"] is None]
    assert [(r["state"], r["settled_usd"]) for r in never] == [("settled", 0.0)]
