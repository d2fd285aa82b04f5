"""1,000 jobs through the real client against the fake Replicate server with injected faults, on a
virtual clock shared by the executor and the fake (hours of backoff run in seconds).

Faults per create: 20 % 429 (half with Retry-After, half with the hint only in the body), 5 %
500/503, 3 % read timeouts, 1 % lost replies (created, reply dropped), 0.5 % model errors,
0.5 % 401. The fake also enforces 600 creates per sliding 60 s window on its own.
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
            ("401", 0.30),
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
    assert all(outcomes[kind] > 0 for kind in ("timeout", "lost", "model-error", "401"))
    # No create before the server's hint; never over the limit in any 60 s window.
    assert state.early_creates == 0
    assert state.throttled == 0 and state.max_in_window <= LIMIT
    # 401s and model errors are not retried: no later create of the same input.
    for i, record in enumerate(state.creates):
        if record.outcome in ("401", "model-error"):
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
    classes = Counter(error.split("]")[0] + "]" for error in errors)
    assert states.get("done", 0) + states.get("failed", 0) == 1000, states
    assert classes == {
        "[model-error]": outcomes["model-error"],
        "[http-401]": outcomes["401"],
    }
    assert open_reservations == []
    assert report.exit_code == 1  # some jobs failed, with their reasons
