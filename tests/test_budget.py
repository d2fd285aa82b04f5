"""The budget invariant, as a property: settled + open reservations never exceed a cap, at every
step, whatever the prices, the predict times (0.2-3x the estimate) and where a run crashes
(between reserving and creating, or between creating and settling). The caps: one run's, one
UTC day's, and any rolling 60 minutes' (the ledger's clock moves on between jobs, so windows
open and close and cross midnight).

Runs the real pieces: cost.worst_case, Ledger.reserve/attach/settle, reconcile_open after a crash
(with a stand-in for the API: the property is about the ledger, not HTTP) and the executor's rule
that a prediction is cancelled when its predict time reaches what the reservation covers.

The second property drives the real executor with its calls side by side: creates, polls, lists,
downloads and cancels on the wire together, their replies back in seeded random orders (each
call a random time on the virtual clock, tests/helpers/interleaved.py), under seeded faults.
Before every create the ledger holds an open reservation for it that no other prediction uses;
at every step settled + open is within the run's cap and any hour's; no prediction runs past
what its reservation covers; no job is paid for twice.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers.fake_replicate import VirtualClock
from helpers.interleaved import InterleavedCalls, StandInReplicate
from helpers.specs import bare_spec
from songbatch.cost import settled_cost, worst_case
from songbatch.engines.base import JobRequest
from songbatch.ledger import CapReached, JobRow, Ledger, ManifestRecord, PlanRow, SpendCaps
from songbatch.profiles import ReplicateConfig
from songbatch.remote.client import PredictionState
from songbatch.remote.executor import RemoteExecutor, RemoteHooks, RemoteSettings, RemoteSummary
from songbatch.remote.reconcile import reconcile_open
from songbatch.workspace import Workspace

GRACE_S = 2.0


def config(
    price: float, base_s: float, per_audio_s: float, factor: float, **more: Any
) -> ReplicateConfig:
    return ReplicateConfig.model_validate(
        {
            **more,
            "hardware_usd_per_s": {"gpu": price},
            "cancel_grace_s": GRACE_S,
            "models": {
                "m": {
                    "ref": "o/m",
                    "inputs": {"text": "text"},
                    "price": {"per": "second", "hardware": "gpu"},
                    "predict": {
                        "base_s": base_s,
                        "per_audio_s": per_audio_s,
                        "worst_factor": factor,
                    },
                }
            },
        }
    )


@dataclass
class StandInApi:
    """What the API knows after a crash: predictions that were created, by input."""

    created: dict[str, PredictionState] = field(default_factory=dict)

    def get(self, prediction_id: str) -> PredictionState:
        return next(p for p in self.created.values() if p.id == prediction_id)

    def recent(self, max_pages: int = 5) -> list[PredictionState]:
        return list(self.created.values())

    def cancel(self, prediction_id: str) -> None:
        pass


job = st.tuples(
    st.floats(0.5, 30),  # audio seconds
    st.floats(0.2, 3.0),  # predict time / estimate
    st.floats(0, 1),  # how late the cancel lands, as a share of the grace
    st.sampled_from(["none", "before-create", "before-settle"]),
    st.floats(0, 40 * 60),  # seconds on the clock before this job's reserve
)

# 23:30 UTC: the day cap's window turns over during a run.
START = 1_764_631_800.0


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    price=st.floats(1e-5, 1e-2),
    base_s=st.floats(0, 20),
    per_audio_s=st.floats(0, 3),
    factor=st.floats(1, 4),
    run_cap=st.floats(0, 2),
    day_cap=st.floats(0, 3),
    hour_cap=st.floats(0, 1),
    jobs=st.lists(job, min_size=1, max_size=25),
)
def test_settled_plus_open_never_exceeds_a_cap(
    price: float,
    base_s: float,
    per_audio_s: float,
    factor: float,
    run_cap: float,
    day_cap: float,
    hour_cap: float,
    jobs: list[tuple[float, float, float, str, float]],
) -> None:
    cfg = config(price, base_s, per_audio_s, factor)
    model = cfg.models["m"]
    clock = Clock()
    caps = SpendCaps(run_usd=run_cap, day_usd=day_cap, hour_usd=hour_cap)
    with tempfile.TemporaryDirectory() as folder:
        ledger = _ledger(Path(folder), len(jobs), clock)
        run_id = ledger.start_run([])
        api = StandInApi()

        def check() -> None:
            for where, arg, cap in (("run_id = ?", run_id, run_cap), ("day = ?", None, day_cap)):
                if arg is None:
                    for settled, reserved in _day_totals(ledger):
                        assert settled + reserved <= cap + 1e-6, (where, settled, reserved, cap)
                else:
                    settled, reserved = ledger.spend(run_id=run_id)
                    assert settled + reserved <= cap + 1e-6, (where, settled, reserved, cap)
            worst = _busiest_hour(ledger.conn)
            assert worst <= hour_cap + 1e-6, ("hour", worst, hour_cap)

        for index, (audio_s, ratio, late, crash, gap_s) in enumerate(jobs):
            clock.now += gap_s
            text = f"job {index}"
            model_input: dict[str, Any] = {"text": text}
            reservation = worst_case(cfg, model, model_input, audio_s)
            try:
                rid = ledger.reserve(
                    job_key=f"{index:064x}",
                    token=None,
                    run_id=run_id,
                    model="o/m",
                    model_input=model_input,
                    usd=reservation.usd,
                    seconds=reservation.reserved_s,
                    caps=caps,
                )
            except CapReached:
                check()
                break  # the run stops cleanly here
            check()
            if crash == "before-create":
                ledger, run_id = _crash_and_recover(ledger, cfg, api, folder, clock)
                check()
                continue
            actual_s = (model.predict.base_s + model.predict.per_audio_s * audio_s) * ratio
            # The executor cancels at cancel_after_s; the cancel lands within the grace.
            billed_s = min(actual_s, reservation.cancel_after_s + late * GRACE_S)
            state = PredictionState(
                id=f"p{index}",
                status="succeeded",
                model="o/m",
                version=None,
                input=model_input,
                output=None,
                error=None,
                predict_s=billed_s,
                created_at=None,
            )
            api.created[text] = state
            if crash == "before-settle":
                ledger, run_id = _crash_and_recover(ledger, cfg, api, folder, clock)
                check()
                continue
            ledger.attach_prediction(rid, state.id)
            usd = settled_cost(
                cfg,
                model,
                model_input,
                succeeded=True,
                predict_s=billed_s,
                reserved_usd=reservation.usd,
            )
            assert usd <= reservation.usd + 1e-6
            ledger.settle(rid, usd=usd, predict_ms=round(billed_s * 1000), outcome="succeeded")
            check()
        ledger.close()


def _crash_and_recover(
    ledger: Ledger, cfg: ReplicateConfig, api: StandInApi, folder: str, clock: Clock
) -> tuple[Ledger, int]:
    """kill -9: the connection goes away mid-run; the next run reconciles, then starts."""
    ledger.close()
    ledger = Ledger(Path(folder) / "ledger.db", clock=clock)
    reconcile_open(ledger, api, cfg, lambda kind, message: None)  # type: ignore[arg-type]
    # A fresh run has its own run cap; the day cap spans both. Adopted ones stay open and count.
    return ledger, ledger.start_run([])


def _day_totals(ledger: Ledger) -> list[tuple[float, float]]:
    days = [row[0] for row in ledger.conn.execute("SELECT DISTINCT day FROM reservations")]
    return [ledger.spend(day=day) for day in days]


def _busiest_hour(conn: sqlite3.Connection) -> float:
    """The most any 60 minutes holds, settled or still reserved, worked out here from the rows
    (not by the ledger's own query): each window that matters ends at some reservation."""
    rows = conn.execute(
        "SELECT created_utc, CASE state WHEN 'open' THEN reserved_usd ELSE settled_usd END"
        " FROM reservations"
    ).fetchall()
    times = [(_utc(t), usd) for t, usd in rows]
    return max(
        (sum(usd for at, usd in times if end - 3600 < at <= end) for end, _ in times), default=0.0
    )


def _ledger(folder: Path, count: int, clock: Callable[[], float]) -> Ledger:
    ledger = Ledger(folder / "ledger.db", clock=clock)
    jobs = [
        JobRow(
            f"{i:064x}", "speech", "replicate", "m", JobRequest("speech", f"job {i}", 0), 5, 1000
        )
        for i in range(count)
    ]
    record = ManifestRecord("/b.yaml", "audiobook", "B", "b", "s", "remote", "x", bare_spec())
    ledger.apply_plan(record, jobs, [PlanRow(0, i, job.key, 0) for i, job in enumerate(jobs)])
    return ledger


def _utc(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


PRICE = 0.001  # USD per predict second
# Expected 1 + 0.5 x 1 s of audio = 1.5 s; cancelled at 4.5 s; 6.5 s reserved = $0.0065 a job.
PREDICT = (1.0, 0.5, 3.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(5, 30),
    in_flight=st.integers(2, 16),
    connections=st.integers(2, 8),
    # Up to about all the jobs' worst cases (30 x $0.0065): some runs stop at a cap, some end.
    run_cap=st.floats(0.01, 0.25),
    hour_cap=st.floats(0.01, 0.25),
    fault_rate=st.floats(0.0, 0.3),
    poll_s=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_calls_side_by_side_never_create_unreserved_nor_cross_a_cap(
    seed: int,
    count: int,
    in_flight: int,
    connections: int,
    run_cap: float,
    hour_cap: float,
    fault_rate: float,
    poll_s: float,
) -> None:
    rng = random.Random(seed)
    clock = VirtualClock(START)
    rate = {"concurrency": in_flight, "connections": connections}
    retry = {"max_attempts": 4, "base_s": 0.5, "cap_s": 4, "max_total_s": 60}
    cfg = config(
        PRICE, *PREDICT, rate=rate, retry=retry, poll_s=poll_s, max_spend_per_hour=hour_cap
    )
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        ledger = _ledger(Path(folder), count, clock)
        path = Path(folder) / "ledger.db"
        # Every kind of call fails at random but a cancel, which lands when sent: the budget's
        # own assumption (as in the test above), which the grace covers.
        api = StandInReplicate(
            clock, random.Random(rng.random()), fault_rate=fault_rate, expected_s=1.5
        )
        keys = {f"job {i}": f"{i:064x}" for i in range(count)}

        # What is committed, as another process would read it.
        conn = stack.enter_context(_read(path))

        def within_caps() -> None:
            assert clock() - START < 6 * 3600, "still running after 6 virtual hours"
            settled, still_open = _totals(conn)
            assert settled + still_open <= run_cap + 1e-9, (settled, still_open, run_cap)
            assert _busiest_hour(conn) <= hour_cap + 1e-9

        def reserved_before_create(model_input: dict[str, Any]) -> None:
            key = keys[model_input["text"]]
            rows = conn.execute(
                "SELECT state, prediction_id FROM reservations WHERE job_key = ?", (key,)
            ).fetchall()
            attached = {pid for _, pid in rows if pid is not None}
            unattached = [
                m for m in api.made.values() if m.input == model_input and m.id not in attached
            ]
            free = sum(1 for state, pid in rows if state == "open" and pid is None)
            # Each prediction made but not yet recorded (a lost reply) holds one of them.
            assert free >= len(unattached) + 1, (rows, unattached)
            within_caps()

        api.on_create = reserved_before_create
        calls = InterleavedCalls(connections, clock, rng, on_step=within_caps)
        run_id = ledger.start_run([])
        executor = RemoteExecutor(
            ledger,
            Workspace(Path(folder)),
            cfg,
            run_id=run_id,
            manifest_ids=[info.id for info in ledger.manifests()],
            settings=RemoteSettings(max_spend=run_cap, transient_patience_s=120),
            hooks=RemoteHooks(
                clock=clock, sleep=clock.sleep, rng=rng, api=api, calls=calls, virtual=True
            ),
        )
        summary = executor.run()
        within_caps()
        _note_what_happened(summary, calls.most_at_once)
        states = dict(conn.execute("SELECT key, state FROM jobs").fetchall())
        reservations = conn.execute(
            "SELECT job_key, state, prediction_id, reserved_s FROM reservations"
        ).fetchall()
        ledger.close()
    assert "leased" not in states.values()
    per_job = Counter(key for key, *_ in reservations)
    made = Counter(keys[m.input["text"]] for m in api.made.values())
    assert all(made[key] <= per_job[key] for key in made), (made, per_job)
    reserved_s = {pid: seconds for _, _, pid, seconds in reservations if pid is not None}
    now = clock()
    for m in api.made.values():
        if m.id in reserved_s:  # never past what its reservation covers
            assert m.billed_s(now) <= reserved_s[m.id] + 1e-6, (m, reserved_s[m.id])
    paid = Counter(keys[m.input["text"]] for m in api.made.values() if api.status(m) == "succeeded")
    assert max(paid.values(), default=0) <= 1
    for key, state, _, _ in reservations:
        assert state == "settled" or states[key] == "pending"  # open ones wait for a next run


def _note_what_happened(summary: RemoteSummary, most_at_once: int) -> None:
    """For --hypothesis-show-statistics: the examples reach what they are about."""
    band = "1" if most_at_once < 2 else "2-4" if most_at_once < 5 else "5+"
    event(f"calls on the wire at once: {band}")
    for what, happened in (
        ("stopped at a cap", summary.stopped_at_budget),
        ("a lost create reconciled", summary.reconciled > 0),
        ("a prediction cancelled", summary.cancelled > 0),
        ("a prediction abandoned", summary.abandoned > 0),
        ("throttled", summary.rate_limited > 0),
    ):
        if happened:
            event(what)


def _read(path: Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True))


def _totals(conn: sqlite3.Connection) -> tuple[float, float]:
    row = conn.execute(
        "SELECT COALESCE(SUM(CASE state WHEN 'settled' THEN settled_usd END), 0),"
        " COALESCE(SUM(CASE state WHEN 'open' THEN reserved_usd END), 0) FROM reservations"
    ).fetchone()
    return float(row[0]), float(row[1])
