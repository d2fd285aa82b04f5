"""The ledger on a real SQLite file: plans, leases with fencing tokens, publish, contention."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from helpers.specs import bare_spec
from songbatch.engines.base import JobRequest
from songbatch.ledger import (
    JobRow,
    Ledger,
    ManifestRecord,
    PlanRow,
    Publication,
    Route,
    SpillReason,
    utc_iso,
)

HELPERS = Path(__file__).parent / "helpers"


class FakeClock:
    """Lease expiry is about time passing; a test moves time instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make_plan(
    count: int, *, prefix: str = "k", path: str = "/m.yaml"
) -> tuple[ManifestRecord, list[JobRow], list[PlanRow]]:
    jobs = [
        JobRow(
            f"{prefix}{i:05d}",
            "speech",
            "synthetic",
            "m",
            JobRequest("speech", str(i), 0),
            10,
            100 + i,
        )
        for i in range(count)
    ]
    rows = [
        PlanRow(unit=i // 10, seq=i % 10, key=j.key, pause_after_ms=300) for i, j in enumerate(jobs)
    ]
    record = ManifestRecord(
        path=path,
        kind="audiobook",
        title="T",
        slug="t",
        source_sha256="s",
        profile="p",
        plan_sha256="|".join(j.key for j in jobs),
        assembly=bare_spec(),
    )
    return record, jobs, rows


def table_counts(ledger: Ledger) -> dict[str, int]:
    tables = ["jobs", "manifest_jobs", "manifests", "events", "attempts"]
    return {t: ledger.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}


def test_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    with Ledger(path) as ledger:
        applied = ledger.conn.execute("SELECT name FROM _sqlite_migrations").fetchall()
        assert [row[0] for row in applied] == [
            "m001_initial",
            "m002_render_info",
            "m003_spend",
            "m004_integrity",
            "m005_spend_by_hour",
            "m006_window",
            "m007_timings",
            "m008_routes",
            "m009_written",
        ]
        assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_replanning_an_unchanged_plan_writes_nothing(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        record, jobs, rows = make_plan(50)
        first = ledger.apply_plan(record, jobs, rows)
        assert (first.new, first.unchanged) == (50, 0)
        before = table_counts(ledger)
        changes = ledger.conn.total_changes
        again = ledger.apply_plan(record, jobs, rows)
        assert (again.new, again.reused, again.unchanged, again.dropped) == (0, 0, 50, 0)
        assert table_counts(ledger) == before
        assert ledger.conn.total_changes == changes


def test_an_edit_replans_only_the_changed_jobs(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        record, jobs, rows = make_plan(20)
        ledger.apply_plan(record, jobs, rows)
        jobs[3] = JobRow("edited", "speech", "synthetic", "m", JobRequest("speech", "", 0), 10, 100)
        rows[3] = PlanRow(rows[3].unit, rows[3].seq, "edited", 300)
        record = ManifestRecord(**{**vars(record), "plan_sha256": "changed"})
        diff = ledger.apply_plan(record, jobs, rows)
        assert (diff.new, diff.unchanged, diff.dropped) == (1, 19, 1)
        # The dropped job stays in the content-keyed cache; another manifest can reuse it.
        other, _, _ = make_plan(0, path="/other.yaml")
        reuse = ledger.apply_plan(
            ManifestRecord(**{**vars(other), "plan_sha256": "x"}),
            [],
            [PlanRow(0, 0, "k00003", 0)],
        )
        assert (reuse.new, reuse.reused) == (0, 1)


def test_claims_longest_first_with_increasing_tokens(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.apply_plan(*make_plan(5))
        leases = ledger.claim(limit=5, worker="w", device="cpu", lease_s=60)
        assert [lease.est_ms for lease in leases] == [104, 103, 102, 101, 100]
        tokens = [lease.token for lease in leases]
        assert tokens == sorted(tokens) and len(set(tokens)) == 5
        assert ledger.claim(limit=5, worker="w", device="cpu", lease_s=60) == []


def test_a_stale_lease_never_publishes(tmp_path: Path) -> None:
    """A killed run's lease comes back with the next run; its worker's late file is refused."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.apply_plan(*make_plan(1))
        ledger.start_run(["first"])
        [old] = ledger.claim(limit=1, worker="a", device="cpu", lease_s=60)
        ledger.start_run(["second"])  # the first run was killed; its worker lingered
        [new] = ledger.claim(limit=1, worker="b", device="cpu", lease_s=60)
        assert new.token > old.token
        late = tmp_path / "late.tmp"
        late.write_bytes(b"a")
        final = tmp_path / "final"
        assert ledger.publish_many([Publication(old, late, final, "a", 1, 1)]) == [False]
        assert not late.exists() and not final.exists()
        fresh = tmp_path / "fresh.tmp"
        fresh.write_bytes(b"b")
        assert ledger.publish_many([Publication(new, fresh, final, "b", 1, 1)]) == [True]
        assert final.read_bytes() == b"b"
        job = ledger.job(new.key)
        assert job is not None and (job["state"], job["sha256"], job["failures"]) == (
            "done",
            "b",
            0,
        )
        outcomes = ledger.conn.execute("SELECT outcome FROM attempts ORDER BY token").fetchall()
        assert [row[0] for row in outcomes] == ["abandoned", "done"]


def test_heartbeat_keeps_a_progressing_lease(tmp_path: Path) -> None:
    clock = FakeClock()
    with Ledger(tmp_path / "ledger.db", clock=clock) as ledger:
        ledger.apply_plan(*make_plan(1))
        [lease] = ledger.claim(limit=1, worker="a", device="cpu", lease_s=60)
        for _ in range(5):
            clock.now += 50
            assert ledger.heartbeat([lease.token], 60) == 1
        [expires] = ledger.conn.execute("SELECT lease_expires_utc FROM jobs").fetchone()
        assert expires == utc_iso(clock.now + 60)


def test_failures_retry_then_fail(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.apply_plan(*make_plan(1))
        states = []
        for _ in range(3):
            [lease] = ledger.claim(limit=1, worker="a", device="cpu", lease_s=60)
            states.append(ledger.fail(lease, "boom", retryable=True, max_failures=3))
        assert states == ["pending", "pending", "failed"]
        ledger.apply_plan(*make_plan(1, prefix="z", path="/z.yaml"))
        [lease] = ledger.claim(limit=1, worker="a", device="cpu", lease_s=60)
        assert ledger.fail(lease, "bad text", retryable=False, max_failures=3) == "failed"


def test_a_new_run_recovers_a_dead_runs_leases_uncharged(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.apply_plan(*make_plan(3))
        ledger.start_run(["first"])
        ledger.claim(limit=3, worker="a", device="cpu", lease_s=600)
        ledger.start_run(["second"])  # the first run was killed
        counts = Counter(row[0] for row in ledger.conn.execute("SELECT state FROM jobs"))
        assert counts == {"pending": 3}
        assert {row[0] for row in ledger.conn.execute("SELECT failures FROM jobs")} == {0}
        outcomes = {row[0] for row in ledger.conn.execute("SELECT outcome FROM attempts")}
        assert outcomes == {"abandoned"}


def test_retry_and_forced_retry_are_recorded(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        record, jobs, rows = make_plan(2)
        ledger.apply_plan(record, jobs, rows)
        first, second = ledger.claim(limit=2, worker="a", device="cpu", lease_s=60)
        ledger.fail(first, "x", retryable=False, max_failures=3)
        tmp = tmp_path / "t"
        tmp.write_bytes(b"x")
        ledger.publish_many([Publication(second, tmp, tmp_path / "f", "x", 1, 1)])
        manifest_id = ledger.manifest_id(record.path)
        assert manifest_id is not None
        assert ledger.retry([manifest_id]) == 1
        assert ledger.job(first.key)["state"] == "pending"  # type: ignore[index]
        assert ledger.job(second.key)["state"] == "done"  # type: ignore[index]
        assert ledger.retry([manifest_id], force=True) == 1
        kinds = [row[0] for row in ledger.conn.execute("SELECT kind FROM events ORDER BY id")]
        assert kinds == ["plan", "retry", "retry-forced"]


def test_eight_processes_claim_a_thousand_jobs_without_duplicates(tmp_path: Path) -> None:
    ledger_path = tmp_path / "ledger.db"
    with Ledger(ledger_path) as ledger:
        ledger.apply_plan(*make_plan(1000))
    out = tmp_path / "out"
    out.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, str(HELPERS / "claimer.py"), str(ledger_path), str(out), f"p{i}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    lines = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        lines += stdout.splitlines()
    done = [line.split()[1] for line in lines if line.startswith("DONE")]
    assert [line for line in lines if line.startswith("ERROR ")] == []
    assert [line for line in lines if line.startswith("ERRORS")] == ["ERRORS 0"] * 8
    assert len(done) == 1000 and len(set(done)) == 1000
    with Ledger(ledger_path) as ledger:
        states = Counter(row[0] for row in ledger.conn.execute("SELECT state FROM jobs"))
        assert states == {"done": 1000}
        assert ledger.integrity_ok()


@pytest.mark.parametrize("count", [0, 1])
def test_status_counts(tmp_path: Path, count: int) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.apply_plan(*make_plan(count + 1))
        counts = ledger.state_counts()
        assert sum(c.jobs for c in counts) == count + 1


def test_a_routed_job_is_claimed_by_the_spill_over_side_alone(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.apply_plan(*make_plan(30))  # units 0, 1, 2 of ten jobs each
        [mid] = [info.id for info in ledger.manifests(None)]
        [first, second, third] = ledger.spill_units([mid])
        assert [u.unit for u in (first, second, third)] == [0, 1, 2]
        keys = [job.key for job in third.jobs]
        moved = ledger.route_to_spill(keys, SpillReason.DEADLINE, run_id=1, manifest_id=mid)
        assert moved == 10 and ledger.own_pending([mid]) == 20
        own = ledger.claim(limit=100, worker="w", device="d", lease_s=60, route=Route.OWN)
        assert {lease.key for lease in own}.isdisjoint(keys) and len(own) == 20
        spilled = ledger.claim(limit=100, worker="r", device="api", lease_s=60, route=Route.SPILL)
        assert sorted(lease.key for lease in spilled) == sorted(keys)
        assert ledger.spilled_jobs([mid]) == {mid: {"deadline": 10}}
        assert ledger.spilled_in_run(1) == {"deadline": 10}
        # A routed job already leased is not routed again, nor moved back.
        assert ledger.route_to_spill(keys, SpillReason.FAILURES, run_id=1, manifest_id=mid) == 0
        assert ledger.route_back([mid], keep_whole_units=False) == 0


def test_routes_come_back_but_a_chapter_the_spill_over_started_keeps_its_voice(
    tmp_path: Path,
) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.apply_plan(*make_plan(20))
        [mid] = [info.id for info in ledger.manifests(None)]
        unit_zero = [u.key for u in ledger.unit_jobs(mid, 0)]
        unit_one = [u.key for u in ledger.unit_jobs(mid, 1)]
        ledger.route_to_spill(unit_one, SpillReason.DEADLINE, run_id=1, manifest_id=mid)
        # The spill-over renders one job of unit 1.
        [lease] = ledger.claim(limit=1, worker="r", device="api", lease_s=60, route=Route.SPILL)
        tmp = tmp_path / "chunk.tmp"
        tmp.write_bytes(b"x")
        publication = Publication(
            lease, tmp, tmp_path / "chunk.flac", sha256="0" * 64, duration_ms=1, render_ms=1
        )
        assert ledger.publish_many([publication]) == [True]
        ledger.route_to_spill(unit_zero, SpillReason.DEADLINE, run_id=1, manifest_id=mid)
        # Then it stops: unit 0 comes back whole; unit 1 keeps its nine pending jobs there.
        assert ledger.route_back([mid], keep_whole_units=True) == 10
        still = ledger.claim(limit=50, worker="r", device="api", lease_s=60, route=Route.SPILL)
        assert {x.key for x in still} == set(unit_one) - {lease.key}
