"""Nightly windows: claims that finish whole files first, the deadline arithmetic, `--until`,
folders and priorities, JSON logs and the run summary."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.books import book_manifest, synthetic_profile
from helpers.specs import bare_spec
from songbatch.cli.main import app
from songbatch.engines.base import JobRequest
from songbatch.ledger import JobRow, Ledger, ManifestRecord, PlanRow, Publication
from songbatch.spans import SpanError, next_occurrence, parse_clock
from songbatch.window import JobTimes, room


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


# ------------------------------------------------------------------ the deadline arithmetic


def test_room_counts_the_jobs_that_still_end_before_the_deadline() -> None:
    # 10 s left, 2 s a job: four end before the deadline (the fifth would end on it).
    assert room(100.0, 110.0, ahead=0, per_job_s=2.0) == 4
    assert room(100.0, 110.0, ahead=3, per_job_s=2.0) == 1
    assert room(100.0, 110.0, ahead=4, per_job_s=2.0) == 0
    assert room(100.0, 110.5, ahead=0, per_job_s=2.0) == 5
    assert room(110.0, 110.0, ahead=0, per_job_s=None) == 0  # the deadline itself
    assert room(100.0, 110.0, ahead=9, per_job_s=None) is None  # nothing measured yet
    assert room(100.0, None, ahead=9, per_job_s=2.0) is None  # no deadline


def test_job_times_follow_the_lane_then_the_run() -> None:
    times = JobTimes(samples=2)
    assert times.per_job("a") is None
    times.record("a", 1.0)
    times.record("a", 3.0)
    times.record("a", 5.0)  # only the last two count
    assert times.per_job("a") == 4.0
    times.record("c", 7.0)
    assert times.per_job("b") == 6.0  # a lane not measured: the run's recent mean


# ------------------------------------------------------------------ --until


def test_until_is_the_next_local_occurrence() -> None:
    now = datetime(2030, 3, 4, 5, 0, 0).astimezone()
    assert next_occurrence("06:30", now) == now.replace(hour=6, minute=30)
    assert next_occurrence("05:00:01", now) == now.replace(second=1)
    tomorrow = next_occurrence("04:59", now)
    assert tomorrow.date() == now.date() + timedelta(days=1)
    assert (tomorrow.hour, tomorrow.minute) == (4, 59)
    # Exactly now is not "next": tomorrow.
    assert next_occurrence("05:00", now).date() == now.date() + timedelta(days=1)
    assert parse_clock(" 6:05 ") == (6, 5, 0)


@pytest.mark.parametrize("value", ["6.30", "24:00", "06:60", "06:30:61", "soon", "6:3", "-1:00"])
def test_garbage_until_is_refused(value: str) -> None:
    with pytest.raises(SpanError):
        parse_clock(value)


def test_bad_until_is_one_line_exit_2_and_nothing_written(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    book = book_manifest(tmp_path, chapters=1, sentences=1, formats="[flac]")
    result = invoke("render", str(book), "--workspace", str(tmp_path), "--until", "6.30")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [
        "songbatch: error: --until '6.30': expected a time like 06:30 or 23:15:30"
        " (24-hour local time)"
    ]
    assert not (tmp_path / ".songbatch").exists()


# ------------------------------------------------------------------ claim order


def plan(ledger: Ledger, path: str, units: list[list[int]], prefix: str) -> int:
    """A manifest whose units have jobs of these estimated lengths."""
    jobs, rows = [], []
    for unit, lengths in enumerate(units):
        for seq, est in enumerate(lengths):
            key = f"{prefix}{unit:03d}{seq:03d}"
            jobs.append(
                JobRow(key, "speech", "synthetic", "m", JobRequest("speech", key, 0), 10, est)
            )
            rows.append(PlanRow(unit, seq, key, 0))
    record = ManifestRecord(path, "audiobook", "T", "t", "s", "p", path, bare_spec())
    ledger.apply_plan(record, jobs, rows)
    manifest_id = ledger.manifest_id(path)
    assert manifest_id is not None
    return manifest_id


def claim(ledger: Ledger, limit: int, ids: list[int] | None = None) -> list[str]:
    leases = ledger.claim(limit=limit, worker="w", device="cpu", lease_s=60, manifest_ids=ids)
    return [lease.key for lease in leases]


def test_claims_finish_started_units_first_longest_first_within_the_frontier(
    tmp_path: Path,
) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        # Unit 2 holds the longest jobs: the old order (longest first everywhere) took them.
        mid = plan(ledger, "/a.yaml", [[10, 20, 30], [15, 25, 35], [90, 80, 70]], "a")
        # The frontier is the first units whose jobs fill the claim; longest first inside.
        assert claim(ledger, 2, [mid]) == ["a000002", "a000001"]
        # Unit 0 is started now: its last job first (its unit is whole in the claim), then
        # unit 1, cut by the limit, longest first.
        assert claim(ledger, 3, [mid]) == ["a000000", "a001002", "a001001"]
        # A wider claim takes whole units in order: unit 1's rest and unit 2.
        assert claim(ledger, 4, [mid]) == ["a002000", "a002001", "a002002", "a001000"]


def test_a_started_unit_goes_before_earlier_untouched_ones(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        mid = plan(ledger, "/a.yaml", [[1, 1], [1, 1], [5, 5]], "a")
        # An older run (or the old longest-first order) left unit 2 half done.
        ledger.conn.execute("UPDATE jobs SET state = 'done' WHERE key = 'a002000'")
        assert claim(ledger, 1, [mid]) == ["a002001"]
        assert claim(ledger, 2, [mid]) == ["a000000", "a000001"]


def test_priority_orders_manifests_and_units_with_a_failed_job_go_last(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        low = plan(ledger, "/low.yaml", [[50, 50]], "l")
        high = plan(ledger, "/high.yaml", [[1, 1], [2, 2]], "h")
        ledger.set_priorities({high: 5})
        # Run order puts `low` first, but priority wins.
        assert claim(ledger, 2, [low, high]) == ["h000000", "h000001"]
        # Past the high manifest's work the low one fills the claim (devices stay busy), after
        # the units the claim holds whole.
        assert claim(ledger, 3, [low, high]) == ["h001000", "h001001", "l000000"]
        [rest] = ledger.claim(limit=1, worker="w", device="cpu", lease_s=60, manifest_ids=[low])
        assert ledger.fail(rest, "bad", retryable=False, max_failures=1) == "failed"
        other = plan(ledger, "/other.yaml", [[1], [1]], "o")
        # A unit that cannot be written this run (a failed job) waits behind a whole one.
        ledger.conn.execute(
            "INSERT INTO manifest_jobs (manifest_id, unit, seq, job_key, pause_after_ms)"
            " VALUES (?, 0, 9, 'l000001', 0)",
            (other,),
        )
        assert claim(ledger, 1, [other]) == ["o001000"]


def test_a_manifest_that_waits_rises_until_it_gets_work(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        low = plan(ledger, "/low.yaml", [[1]], "l")
        high = plan(ledger, "/high.yaml", [[1], [1], [1], [1]], "h")
        ledger.set_priorities({high: 2})
        got = []
        for _ in range(4):
            run = ledger.start_run(["render"])
            [lease] = ledger.claim(
                limit=1, worker="w", device="cpu", lease_s=60, run_id=run, manifest_ids=[low, high]
            )
            tmp = tmp_path / "t"
            tmp.write_bytes(b"x")
            ledger.publish_many([Publication(lease, tmp, tmp_path / lease.key, "x", 1, 1)])
            ledger.age_manifests(run, [low, high])
            got.append(lease.key[0])
        # Two runs behind a priority 2 manifest, the third ties and the waiter goes first.
        assert got == ["h", "h", "l", "h"]
        waited = ledger.conn.execute("SELECT waited_runs FROM manifests ORDER BY id").fetchall()
        assert [row[0] for row in waited] == [0, 0]


# ------------------------------------------------------------------ a window, end to end

CHUNKS_PER_CHAPTER = 3


def chapter_files(folder: Path) -> list[str]:
    return (
        sorted(p.name for p in folder.iterdir() if p.suffix == ".flac") if folder.exists() else []
    )


def status_rows(workspace: Path) -> list[dict[str, Any]]:
    result = invoke("status", "--json", "--workspace", str(workspace))
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_a_time_limited_window_writes_whole_chapters_and_the_next_run_finishes(
    tmp_path: Path,
) -> None:
    synthetic_profile(tmp_path, latency_ms=150, devices="cpu:2")
    book = book_manifest(tmp_path, chapters=40, sentences=CHUNKS_PER_CHAPTER, formats="[flac]")
    result = invoke(
        "render",
        str(book),
        "--workspace",
        str(tmp_path),
        "--time-limit",
        "6s",
        "--log-format",
        "json",
    )
    assert result.exit_code == 4, result.output
    events = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    assert {"ts", "kind", "worker", "job", "message", "data"} <= set(events[0])
    [summary_event] = [e for e in events if e["kind"] == "summary"]
    [row] = status_rows(tmp_path)
    rendered = row["jobs"]["done"]
    written = chapter_files(tmp_path / "outputs" / "chaos-book")
    # The promise: N chunks' worth of work writes at least floor(N / chunks per chapter) - 1
    # chapters (longest first across the book, the same window wrote none).
    assert 0 < rendered < 40 * CHUNKS_PER_CHAPTER
    assert len(written) >= rendered // CHUNKS_PER_CHAPTER - 1, (rendered, written)
    assert row["jobs"]["leased"] == 0
    # The summary file says what `status` says.
    summary = json.loads(Path(summary_event["data"]["path"]).read_text())
    assert summary["exit_code"] == 4 and "time limit" in summary["reason"]
    assert summary["manifests"][0]["jobs"] == row["jobs"]
    assert summary["manifests"][0]["rendered_ms"] == row["rendered_ms"]
    assert summary["jobs"]["done"] == rendered == summary["done_this_run"]
    assert summary["left"] == row["jobs"]["pending"]
    assert summary["files_written"] == len(written)
    assert len(summary["devices"]) == 2
    for device in summary["devices"].values():
        assert 0 < device["busy_share"] <= 1
    finished = invoke("render", str(book), "--workspace", str(tmp_path))
    assert finished.exit_code == 0, finished.output
    assert len(chapter_files(tmp_path / "outputs" / "chaos-book")) == 40
    assert "exit 0: all planned work done" in finished.stderr


def test_a_folder_renders_every_manifest_by_priority(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    for name, priority in (("a-low", 0), ("b-high", 3)):
        (shelf / f"{name}.yaml").write_text(
            f"kind: audiobook\ntitle: {name}\nauthor: A\nprofile: ../synthetic.yaml\n"
            f"priority: {priority}\nformats: [flac]\nspeak_titles: false\nchapters:\n"
            f"  - title: One\n    text: One for {name}. Two for {name}. Three for {name}.\n",
            encoding="utf-8",
        )
    (shelf / "profiles").mkdir()
    (shelf / "profiles" / "x.yaml").write_text("name: x\n", encoding="utf-8")  # not read
    result = invoke("render", str(shelf), "--workspace", str(tmp_path), "--log-format", "json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines()]
    done = [e for e in events if e["kind"] == "job-done"]
    assert len(done) == 4  # two chunks each (max_chars 40)
    titles = [row["title"] for row in status_rows(tmp_path)]
    assert sorted(titles) == ["a-low", "b-high"]
    with Ledger(tmp_path / ".songbatch" / "ledger.db") as ledger:
        first = ledger.conn.execute(
            "SELECT m.title FROM attempts a JOIN manifest_jobs mj ON mj.job_key = a.job_key"
            " JOIN manifests m ON m.id = mj.manifest_id ORDER BY a.token LIMIT 1"
        ).fetchone()[0]
    # One worker, a pool of two: the first claim is the priority manifest's alone.
    assert first == "b-high"
    # A YAML in the folder that is not a manifest is refused, named; nothing more is written.
    (shelf / "c-notes.yaml").write_text("name: x\n", encoding="utf-8")
    refused = invoke("render", str(shelf), "--workspace", str(tmp_path))
    assert refused.exit_code == 2
    assert "c-notes.yaml" in refused.output and len(refused.output.strip().splitlines()) == 1
