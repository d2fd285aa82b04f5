"""Transient is not permanent, for the Replicate executor: outages of the network or the API end
in bounded (virtual) time, burn no job's attempts, pay for no prediction twice, and leave what
could not be finished for the next run; a refused token stops the run; the token never reaches
the ledger or the terminal.

The real `replicate` client and songbatch run unchanged against the fake Replicate server
(tests/helpers/fake_replicate.py; the API is paid), on a virtual clock shared with the fake.
Each run sleeps through a Watchdog: a loop that would never end fails the test instead.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers.books import book_manifest, run_songbatch
from helpers.fake_replicate import TOKEN, FakeReplicate, NetworkOutage, VirtualClock, p_key
from helpers.remote import Watchdog, remote_profile, render_virtual
from songbatch.errors import RemoteRefused
from songbatch.events import RunEvent
from songbatch.remote.client import redact

STUCK = "0-2."  # the third sentence of chapter 1
STUCK_PREDICT = "{base_s: 4, per_audio_s: 0, worst_factor: 3}"  # cancelled after 12 s
CANCEL_AFTER_S = 12.0


def rows(workspace: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(workspace / ".songbatch" / "ledger.db")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, args)]
    finally:
        conn.close()


def polls(status: str, until: float | None = None, clock: VirtualClock | None = None) -> Any:
    """A call-fault plan: every poll (a GET of one prediction, or a page of the list, which polls
    many) answered `status`, until then."""

    def plan(method: str, path: str) -> str | None:
        if until is not None and clock is not None and clock() >= until:
            return None
        return status if is_poll(method, path) else None

    return plan


def is_poll(method: str, path: str) -> bool:
    return method == "GET" and path.startswith("/v1/predictions")


def stuck_once() -> Any:
    seen = 0

    def plan(index: int, model_input: dict[str, Any]) -> str | None:
        nonlocal seen
        if STUCK not in str(model_input.get("text")):
            return None
        seen += 1
        return "stuck" if seen == 1 else None

    return plan


def assert_nothing_charged(workspace: Path) -> None:
    jobs = rows(workspace, "SELECT state, failures FROM jobs")
    assert all(job["failures"] == 0 for job in jobs), jobs
    assert not [job for job in jobs if job["state"] in ("failed", "leased")], jobs


def assert_within_cap(workspace: Path, cap: float) -> None:
    [row] = rows(
        workspace,
        "SELECT COALESCE(SUM(CASE state WHEN 'settled' THEN settled_usd END), 0) AS settled,"
        " COALESCE(SUM(CASE state WHEN 'open' THEN reserved_usd END), 0) AS open FROM reservations",
    )
    assert row["settled"] + row["open"] <= cap + 1e-9, row


def paid_for(fake: FakeReplicate) -> Counter[str]:
    """Predictions that succeeded (were paid in full for an output), per input."""
    ended = [p for p in fake.state.predictions.values() if p.canceled_at is None]
    return Counter(p_key(p.input) for p in ended)


def test_polls_failing_500_then_401_stop_the_run_with_no_job_charged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten virtual minutes of 500s on every poll, then 401 on every call (the token revoked):
    the run raises RemoteRefused, one clear line; nothing failed, every job pending uncharged,
    reservations within the cap, no prediction paid twice. Before: polls retried forever."""
    clock = VirtualClock()
    start = clock()
    remote_profile(tmp_path)
    manifest = book_manifest(
        tmp_path, chapters=1, sentences=5, formats="[flac]", profile="remote.yaml"
    )

    def plan(method: str, path: str) -> str | None:
        if clock() >= start + 600:
            return "401"
        return "500" if is_poll(method, path) else None

    cap = 1.0
    watchdog = Watchdog(clock, 4 * 3600)
    with FakeReplicate(clock, latency_s=2.0, call_faults=plan, echo_auth=True) as fake:
        with pytest.raises(RemoteRefused) as raised:
            render_virtual(
                tmp_path, manifest, fake, clock, monkeypatch, max_spend=cap, sleep=watchdog
            )
        assert fake.state.call_fault_count["401"] >= 1
        assert max(fake.creates_by_input().values()) == 1
    message = str(raised.value)
    assert "HTTP 401" in message and "REPLICATE_API_TOKEN" in message
    assert "\n" not in message and TOKEN not in message
    assert clock() - start < 600 + 3600
    assert_nothing_charged(tmp_path)
    assert {job["state"] for job in rows(tmp_path, "SELECT state FROM jobs")} == {"pending"}
    assert_within_cap(tmp_path, cap)
    [run] = rows(tmp_path, "SELECT exit_code FROM runs")
    assert run["exit_code"] == RemoteRefused.exit_code == 1


def test_polls_failing_forever_end_the_run_and_the_next_run_finishes_paying_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every poll answers 500 and one prediction is stuck. The run ends in bounded virtual time;
    the stuck prediction is cancelled on the time since its create (no poll ever saw it run)
    within what its reservation covers; every job stays pending, set aside, with its
    reservation open. The next run (the API healthy) adopts the finished predictions by id,
    settles the cancelled one and ends with every job done: no output paid twice."""
    clock = VirtualClock()
    start = clock()
    remote_profile(tmp_path, predict=STUCK_PREDICT, patience_s=120)
    manifest = book_manifest(
        tmp_path, chapters=1, sentences=5, formats="[flac]", profile="remote.yaml"
    )
    fake = FakeReplicate(clock, latency_s=2.0, faults=stuck_once(), call_faults=polls("500"))
    with fake:
        first = render_virtual(
            tmp_path, manifest, fake, clock, monkeypatch, sleep=Watchdog(clock, 4 * 3600)
        )
        ended_at = clock()
        [stuck] = [p for p in fake.state.predictions.values() if STUCK in p.input["text"]]
        assert stuck.canceled_at is not None
        assert 0 < stuck.canceled_at - stuck.created <= CANCEL_AFTER_S
        assert first.exit_code == 1 and len(first.set_aside) == 5 and not first.failed
        assert_nothing_charged(tmp_path)
        reservations = rows(tmp_path, "SELECT * FROM reservations")
        assert len(reservations) == 5
        assert all(r["state"] == "open" and r["prediction_id"] for r in reservations)
        fake.state.call_faults = None
        second = render_virtual(
            tmp_path, manifest, fake, clock, monkeypatch, sleep=Watchdog(clock, 3600)
        )
        assert max(paid_for(fake).values()) == 1
        assert len(fake.state.predictions) == 6  # the stuck job's second create, no other
    assert ended_at - start < 3600
    assert second.exit_code == 0, (second.failed, second.set_aside)
    assert {job["state"] for job in rows(tmp_path, "SELECT state FROM jobs")} == {"done"}
    assert all(r["state"] == "settled" for r in rows(tmp_path, "SELECT * FROM reservations"))
    assert_nothing_charged(tmp_path)


def test_a_minute_of_dns_outage_ends_with_every_job_done_and_no_attempt_burned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For one virtual minute every connection fails as a name lookup does (NetworkOutage, the
    transport under the real client: see its docstring for why the fault lives there), through
    creates and polls alike. The book still ends done, exit 0, no job charged a failure, each
    job created once. Before: the jobs whose creates met the outage failed for good."""
    clock = VirtualClock()
    start = clock()
    remote_profile(tmp_path, rate="{creates_per_min: 60, burst: 2, concurrency: 4}", poll_s=1.0)
    manifest = book_manifest(
        tmp_path, chapters=2, sentences=5, formats="[flac]", profile="remote.yaml"
    )
    outage = NetworkOutage(clock, start + 3, start + 63)
    events: list[RunEvent] = []
    with FakeReplicate(clock, latency_s=2.0) as fake:
        report = render_virtual(
            tmp_path,
            manifest,
            fake,
            clock,
            monkeypatch,
            transport=outage,
            events=events,
            sleep=Watchdog(clock, 4 * 3600),
        )
        assert max(fake.creates_by_input().values()) == 1
    assert outage.failed > 10  # creates and polls both met it
    assert report.exit_code == 0, (report.failed, report.set_aside)
    assert {job["state"] for job in rows(tmp_path, "SELECT state FROM jobs")} == {"done"}
    assert_nothing_charged(tmp_path)
    set_aside = [e for e in events if e.kind == "job-set-aside"]
    assert set_aside and all("name resolution" in e.message for e in set_aside)
    assert all(r["state"] == "settled" for r in rows(tmp_path, "SELECT * FROM reservations"))


def test_the_time_limit_ends_a_run_where_only_failing_polls_remain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every job created, every poll failing, a retry policy that would keep polling for hours:
    the time limit still ends the run at once (exit 4), the predictions left to the next run
    with their reservations open, no job charged. Before: the polls went on forever."""
    clock = VirtualClock()
    start = clock()
    remote_profile(
        tmp_path, retry="{max_attempts: 1000, base_s: 1, cap_s: 60, max_total_s: 360000}"
    )
    manifest = book_manifest(
        tmp_path, chapters=1, sentences=3, formats="[flac]", profile="remote.yaml"
    )
    with FakeReplicate(clock, latency_s=2.0, call_faults=polls("500")) as fake:
        report = render_virtual(
            tmp_path,
            manifest,
            fake,
            clock,
            monkeypatch,
            time_limit_s=60,
            sleep=Watchdog(clock, 4 * 3600),
        )
        assert len(fake.state.predictions) == 3
    assert report.exit_code == 4
    assert clock() - start <= 60 + 5
    assert_nothing_charged(tmp_path)
    reservations = rows(tmp_path, "SELECT * FROM reservations")
    assert len(reservations) == 3 and all(r["state"] == "open" for r in reservations)


OTHER_TOKEN = "sk-songbatch-test-secret-4242"  # not shaped like a Replicate token


def echo_faults() -> Any:
    """Sentence 1 a model error, sentence 2 a 422, sentence 3 a 500 on its first two creates:
    each error the fake gives quotes the token."""
    seen: Counter[str] = Counter()

    def plan(index: int, model_input: dict[str, Any]) -> str | None:
        text = str(model_input.get("text"))
        seen[text] += 1
        if "0-0." in text:
            return "model-error"
        if "0-1." in text:
            return "422"
        if "0-2." in text and seen[text] <= 2:
            return "500"
        return None

    return plan


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN])
def test_the_token_echoed_by_the_endpoint_never_reaches_the_ledger_or_the_observer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    clock = VirtualClock()
    remote_profile(tmp_path, retry="{max_attempts: 2, base_s: 1, cap_s: 60, max_total_s: 3600}")
    manifest = book_manifest(
        tmp_path, chapters=1, sentences=4, formats="[flac]", profile="remote.yaml"
    )
    events: list[RunEvent] = []
    fake = FakeReplicate(clock, latency_s=2.0, faults=echo_faults(), echo_auth=True, token=token)
    with fake:
        report = render_virtual(tmp_path, manifest, fake, clock, monkeypatch, events=events)
    assert report.exit_code == 1 and len(report.failed) == 2
    stored = ledger_text(tmp_path)
    assert token not in stored
    assert "[redacted]" in stored  # the echo was there, and was redacted
    for column in ("SELECT error FROM jobs", "SELECT error FROM attempts"):
        errors = [str(r["error"]) for r in rows(tmp_path, column) if r["error"]]
        assert errors and all(token not in error for error in errors)
    said = repr(events) + repr(report.failed) + repr(report.set_aside)
    assert token not in said and "[redacted]" in said


def test_the_token_echoed_by_the_endpoint_never_reaches_the_terminal(tmp_path: Path) -> None:
    remote_profile(tmp_path, poll_s=0.2)
    manifest = book_manifest(
        tmp_path, chapters=1, sentences=3, formats="[flac]", profile="remote.yaml"
    )

    def plan(index: int, model_input: dict[str, Any]) -> str | None:
        text = str(model_input.get("text"))
        return "model-error" if "0-0." in text else "422" if "0-1." in text else None

    with FakeReplicate(latency_s=0.2, faults=plan, echo_auth=True) as fake:
        result = run_songbatch(
            "render",
            str(manifest),
            "--workspace",
            str(tmp_path),
            cwd=tmp_path,
            env=fake.env(),
            timeout=120,
        )
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert TOKEN not in said and "[redacted]" in said


def ledger_text(workspace: Path) -> str:
    conn = sqlite3.connect(workspace / ".songbatch" / "ledger.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(repr(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)
    finally:
        conn.close()


@pytest.mark.parametrize(
    "text",
    [
        f"detail: {TOKEN} was refused",
        "Authorization: Bearer abcdefgh12345678",
        "header Token abcdefgh12345678 echoed",
        "r8_" + "A1b2" * 10,
    ],
)
def test_redact_removes_anything_that_looks_like_the_token(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    redacted = redact(text)
    assert "[redacted]" in redacted
    for secret in (TOKEN, "abcdefgh12345678", "A1b2A1b2"):
        assert secret not in redacted


def test_redact_leaves_ordinary_text_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", OTHER_TOKEN)
    text = "HTTP 422: Invalid token length in input.text"
    assert redact(text) == text
    assert redact(f"x {OTHER_TOKEN} y") == "x [redacted] y"
