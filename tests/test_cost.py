"""`songbatch cost`: estimates of the work left (hand-checked against the price rules and the
default table, not computed by the estimator's own functions), calibration from the ledger after
a render, `--compare` ordering, `--actual` against the ledger's sums, and bad input.

Every figure here is worked out from the profile's numbers in the test itself: a per-second
model bills (base_s + per_audio_s x audio) x the hardware price, and reserves (that x
worst_factor + cancel_grace_s) x the price; a per-output model bills its price. Wall time adds
what assembly does after the last render (ASSEMBLY_S_PER_S, the default table's rates), or
all of it where it is slower than the render.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.books import book_manifest
from helpers.fake_replicate import FakeReplicate, VirtualClock
from helpers.remote import remote_profile, render_virtual
from helpers.verify import state_bytes
from songbatch.cli.main import app
from songbatch.ledger import Ledger, SpendCaps
from songbatch.manifest import load_manifest
from songbatch.planner import plan_manifest
from songbatch.profiles import resolve_profile
from songbatch.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
H100 = 0.001525  # profiles/replicate.yaml: gpu-h100, USD per second
# The estimator's default assembly rates, seconds per audio second, copied by hand.
ASSEMBLY_S_PER_S = {
    "master": 0.0015,
    "flac": 0.0011,
    "mp3": 0.0070,
    "m4b": 0.0091,
    "m4b join": 0.0003,
}
STARTUP_S = 1.0  # a worker's start before its engine loads, by default
# The example album (mp3, flac): 20 s and 28 s tracks. After the last render the longest is
# mastered and encoded; the rest was assembled while it rendered.
ALBUM_TAIL_S = 28 * sum(ASSEMBLY_S_PER_S[fmt] for fmt in ("master", "mp3", "flac"))
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def cost_json(*args: str) -> dict[str, Any]:
    result = invoke("cost", *args, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of manifests/ (with its voice and covers), so a variant can sit beside them."""
    target = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", target)
    return target


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    (workspace / "profiles").mkdir(parents=True)
    return workspace


def shipped_profile(ws: Path, name: str, extra: str = "", rename: str | None = None) -> None:
    """A shipped profile copied into the workspace (which wins over it), with lines added."""
    text = (REPO / "profiles" / f"{name}.yaml").read_text(encoding="utf-8")
    if rename is not None:
        text = text.replace(f"name: {name}\n", f"name: {rename}\n", 1)
    (ws / "profiles" / f"{rename or name}.yaml").write_text(text + extra, encoding="utf-8")


def book_wall_s(render_s: float, manifest: Path, ws: Path, profile: str = "offline") -> float:
    """The example book's wall time by hand, from its render's: chapters are assembled as they
    finish (mastered, encoded to mp3 and to the .m4b's AAC stream), so after the last render
    comes its longest chapter's assembly, unless assembling every chapter takes longer than
    the render; then the .m4b joined from the whole book's streams (pauses included). At the
    default rates; chapter lengths are the planner's."""
    loaded = load_manifest(manifest)
    workspace = Workspace(ws)
    plan = plan_manifest(loaded, resolve_profile(profile, None, workspace), workspace)
    est = {job.key: job.est_ms for job in plan.jobs}
    units: dict[int, float] = {}
    for row in plan.rows:
        units[row.unit] = units.get(row.unit, 0.0) + (est[row.key] + row.pause_after_ms) / 1000
    unit_rate = sum(ASSEMBLY_S_PER_S[fmt] for fmt in ("master", "mp3", "m4b"))
    assembled = max(render_s + max(units.values()) * unit_rate, sum(units.values()) * unit_rate)
    return assembled + sum(units.values()) * ASSEMBLY_S_PER_S["m4b join"]


def only(data: dict[str, Any]) -> dict[str, Any]:
    [item] = data["estimates"]
    result: dict[str, Any] = item
    return result


# --------------------------------------------------------------------------- remote


def test_example_album_on_replicate_is_the_price_rules_by_hand(examples: Path, ws: Path) -> None:
    item = only(cost_json(str(examples / "example-album.yaml"), "-w", str(ws), "-p", "replicate"))
    # Low Tide: 20 s, no lyrics -> musicgen, per second at the H100 ceiling:
    #   expected (10 + 1.5 x 20) s = 40 s; reserved 40 x 3 + 5 (grace) = 125 s.
    # Lantern Song has lyrics -> lyrics_model music-2.5: $0.20 per output, both figures.
    assert item["jobs_left"] == 2 and item["jobs_done"] == 0
    assert item["usd_expected"] == pytest.approx(40 * H100 + 0.20, abs=2e-6)
    assert item["usd_worst"] == pytest.approx(125 * H100 + 0.20, abs=2e-6)
    assert item["audio_left_s"] == pytest.approx(48.0)
    # Wall time: 32 in flight, so the longest prediction: music-2.5's 60 + 0.5 x 28 = 74 s,
    # then the last track's assembly.
    assert item["wall_s"] == pytest.approx(74.0 + ALBUM_TAIL_S)
    assert item["time_from"] == "default"
    assert {b["figure"] for b in item["basis"]} == {
        "predict time musicgen",
        "predict time music-2.5",
        "assembly master",
        "assembly mp3",
        "assembly flac",
    }


def test_example_book_on_replicate_is_the_price_rule_by_hand(examples: Path, ws: Path) -> None:
    book = str(examples / "example-book.yaml")
    item = only(cost_json(book, "-w", str(ws), "-p", "replicate"))
    planned = json.loads(invoke("plan", book, "-w", str(ws), "-p", "offline", "--json").output)
    n, audio = item["jobs_left"], item["audio_left_s"]
    assert n == planned[0]["jobs"] == 20 and item["chars_left"] == planned[0]["chars"]
    # chatterbox: (2 + 0.5 x a) s per chunk at the H100 ceiling; reserved x4 + 5 s grace.
    # Each chunk rounds up to a micro-dollar: at most 20 of them.
    expected_s = 2 * n + 0.5 * audio
    assert item["usd_expected"] == pytest.approx(expected_s * H100, abs=n * 1e-6)
    assert item["usd_worst"] == pytest.approx((expected_s * 4 + 5 * n) * H100, abs=n * 1e-6)
    assert item["device_s"] == pytest.approx(expected_s)


def test_cost_needs_no_replicate_package_nor_token(
    examples: Path, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.setitem(sys.modules, "replicate", None)  # `import replicate` now fails
    monkeypatch.delitem(sys.modules, "songbatch.remote.client", raising=False)
    item = only(cost_json(str(examples / "example-album.yaml"), "-w", str(ws), "-p", "replicate"))
    assert item["usd_expected"] == pytest.approx(40 * H100 + 0.20, abs=2e-6)
    assert "songbatch.remote.client" not in sys.modules


def test_plan_shows_the_same_money_for_a_remote_profile(
    examples: Path, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_not_a_real_token_for_planning_only")
    album = str(examples / "example-album.yaml")
    result = invoke("plan", album, "-w", str(ws), "-p", "replicate", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["usd_expected"] == pytest.approx(40 * H100 + 0.20, abs=2e-6)
    assert row["usd_worst"] == pytest.approx(125 * H100 + 0.20, abs=2e-6)
    text = invoke("plan", album, "-w", str(ws), "-p", "replicate").output
    assert f"${40 * H100 + 0.20:.4f} (${125 * H100 + 0.20:.4f})" in text
    # A local profile has no money in plan: shown as unknown.
    [local] = json.loads(invoke("plan", album, "-w", str(ws), "-p", "offline", "--json").output)
    assert local["usd_expected"] is None and local["usd_worst"] is None


# --------------------------------------------------------------------------- local


def test_offline_default_factor_and_no_money_without_a_cost_block(examples: Path, ws: Path) -> None:
    book = str(examples / "example-book.yaml")
    item = only(cost_json(book, "-w", str(ws), "-p", "offline"))
    audio = item["audio_left_s"]
    # The default table: espeak-ng on a CPU, 0.0031 device seconds per audio second, no load
    # but each worker's start; the offline profile has devices cpu:2.
    assert item["devices"] == 2 and item["device_type"] == "cpu"
    assert item["device_s"] == pytest.approx(audio * 0.0031 + 2 * STARTUP_S)
    render_s = audio * 0.0031 / 2 + STARTUP_S
    assert item["wall_s"] == pytest.approx(
        book_wall_s(render_s, examples / "example-book.yaml", ws)
    )
    assert item["time_from"] == "default"
    assert item["usd_expected"] is None and item["money_from"] == "unknown"
    text = invoke("cost", book, "-w", str(ws), "-p", "offline").output
    assert "usd_per_device_hour" in text  # the hint says what to add


def test_a_cost_block_prices_device_hours_and_loads(
    examples: Path, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # devices: auto -> these two GPUs
    shipped_profile(ws, "local", "cost: {usd_per_device_hour: 0.45, load_s: 30}\n")
    book = only(cost_json(str(examples / "example-book.yaml"), "-w", str(ws), "-p", "local"))
    a = book["audio_left_s"]
    # Chatterbox on CUDA: default 0.36 device-s per audio-s; each of 2 workers loads for 30 s.
    assert (book["devices"], book["device_type"]) == (2, "cuda")
    # load_s is the whole of a worker's start: it replaces the default start-up too.
    assert book["device_s"] == pytest.approx(a * 0.36 + 2 * 30)
    render_s = a * 0.36 / 2 + 30
    wall_s = book_wall_s(render_s, examples / "example-book.yaml", ws, "local")
    assert book["wall_s"] == pytest.approx(wall_s)
    assert book["usd_expected"] == pytest.approx((a * 0.36 + 60) / 3600 * 0.45)
    assert book["usd_worst"] is None
    # Without load_s the table's default load applies (MusicGen small: 15 s per worker),
    # after the worker's start.
    shipped_profile(ws, "local", "cost: {usd_per_device_hour: 0.45}\n")
    album = only(cost_json(str(examples / "example-album.yaml"), "-w", str(ws), "-p", "local"))
    load = 15 + STARTUP_S
    assert album["device_s"] == pytest.approx(48 * 1.75 + 2 * load)
    assert album["wall_s"] == pytest.approx(48 * 1.75 / 2 + load + ALBUM_TAIL_S)
    assert album["usd_expected"] == pytest.approx((48 * 1.75 + 2 * load) / 3600 * 0.45)


def test_a_ray_profile_is_estimated_for_its_actors_not_this_machine(
    examples: Path, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cost` on a driver with no GPU, for a Ray profile of 8 GPU actors: 8 CUDA devices, as the
    run would have, without connecting to the cluster (cost stays offline and fast)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # this machine: no GPU
    ray = "executor: ray\nray: {address: 'ray://127.0.0.1:10001', device: gpu, actors: 8}\n"
    shipped_profile(ws, "local", ray + "cost: {usd_per_device_hour: 1.0, load_s: 30}\n", "ray8")
    book = only(cost_json(str(examples / "example-book.yaml"), "-w", str(ws), "-p", "ray8"))
    a = book["audio_left_s"]
    jobs = book["jobs_left"]
    actors = min(8, jobs)  # a run starts no more actors than it has jobs
    assert (book["devices"], book["device_type"]) == (actors, "cuda")
    assert book["device_s"] == pytest.approx(a * 0.36 + actors * 30)
    # Without `actors` the run takes a GPU per cluster GPU, which cost cannot know offline.
    shipped_profile(ws, "local", "executor: ray\nray: {device: gpu}\n", "rayauto")
    auto = only(cost_json(str(examples / "example-book.yaml"), "-w", str(ws), "-p", "rayauto"))
    assert auto["device_type"] == "cuda" and auto["devices"] == 1
    assert any("ray.actors" in hint for hint in auto["hints"])
    # --devices still wins, as for any profile.
    cpu = only(
        cost_json(
            str(examples / "example-book.yaml"), "-w", str(ws), "-p", "ray8", "--devices", "cpu:2"
        )
    )
    assert (cpu["devices"], cpu["device_type"]) == (2, "cpu")


def test_no_default_factor_is_unknown_and_says_how_to_know(examples: Path, ws: Path) -> None:
    """The local profile on a machine without a GPU: Chatterbox on a CPU has no default."""
    item = only(cost_json(str(examples / "example-book.yaml"), "-w", str(ws), "-p", "local"))
    assert item["device_type"] == "cpu"
    assert item["device_s"] is None and item["wall_s"] is None and item["time_from"] == "unknown"
    assert any("calibrates it" in hint for hint in item["hints"])


# --------------------------------------------------------------------------- calibration


def test_after_an_offline_render_measured_factors_replace_the_default(
    examples: Path, ws: Path
) -> None:
    book = examples / "example-book.yaml"
    # A param every chapter merges: every chunk a new job, of the same length.
    variant = examples / "variant.yaml"
    text = book.read_text(encoding="utf-8")
    assert "    cfg_weight: 0.5\n" in text
    variant.write_text(text.replace("    cfg_weight: 0.5\n", "    cfg_weight: 0.4\n"), "utf-8")
    before = only(cost_json(str(variant), "-w", str(ws), "-p", "offline"))
    assert before["time_from"] == "default"
    result = invoke("render", str(book), "-w", str(ws), "-p", "offline", "-q")
    assert result.exit_code == 0, result.output
    with sqlite3.connect(ws / ".songbatch" / "ledger.db") as conn:
        count, engine_ms, audio_ms, est_ms = conn.execute(
            "SELECT COUNT(*), SUM(a.engine_ms), SUM(j.duration_ms), SUM(j.est_ms) FROM attempts a"
            " JOIN jobs j ON j.key = a.job_key WHERE a.outcome = 'done' AND j.kind = 'speech'"
        ).fetchone()
        loads, load_ms = conn.execute(
            "SELECT COUNT(*), SUM(startup_ms + load_ms) FROM loads"
        ).fetchone()
        encoded = {
            fmt: build_ms / audio
            for fmt, build_ms, audio in conn.execute(
                "SELECT format, SUM(build_ms), SUM(audio_ms) FROM encodes GROUP BY format"
            )
        }
    conn.close()
    after = only(cost_json(str(variant), "-w", str(ws), "-p", "offline"))
    assert count == 20 and after["jobs_left"] == 20
    assert after["time_from"] == f"measured ({count})"
    bases = {b["figure"]: b for b in after["basis"]}
    rate = bases["real-time factor offline espeak-ng on cpu"]
    assert (rate["source"], rate["samples"]) == ("measured", count)
    # Its engine time: the write of a chunk overlaps the next render.
    rtf = engine_ms / audio_ms
    assert rate["value"] == pytest.approx(rtf)
    # The workers' start-ups and every format's assembly were measured too.
    load_s = load_ms / loads / 1000
    assert loads == 2 and bases["start-up and load offline espeak-ng on cpu"]["value"] == (
        pytest.approx(load_s)
    )
    assert set(encoded) == {"master", "mp3", "m4b", "m4b join"}
    for fmt, measured in encoded.items():
        assert bases[f"assembly {fmt}"]["source"] == "measured"
        assert bases[f"assembly {fmt}"]["value"] == pytest.approx(measured)
    # How long the engine's audio really is, for what the planner estimated, corrects the
    # audio left (and the device time with it).
    assert audio_ms != est_ms
    assert after["audio_left_s"] == pytest.approx(before["audio_left_s"] * audio_ms / est_ms)
    assert after["device_s"] == pytest.approx(after["audio_left_s"] * rtf + 2 * load_s)
    assert after["wall_s"] > after["audio_left_s"] * rtf / 2 + load_s
    # What is rendered is free and shown apart.
    done = only(cost_json(str(book), "-w", str(ws), "-p", "offline"))
    assert (done["jobs_left"], done["jobs_done"]) == (0, 20)
    assert done["device_s"] == 0 and done["audio_done_s"] == pytest.approx(before["audio_left_s"])
    text = invoke("cost", str(variant), "-w", str(ws), "-p", "offline").output
    assert f"measured ({count})" in text
    # Replicate's predict times are still the profile's: only the assembly was measured, and
    # the comparison says both, however the labels of its manifests combine.
    rows = cost_json(str(variant), str(book), "-w", str(ws), "--compare", "offline,replicate")
    by_profile = {row["profile"]: row["time_from"] for row in rows["compare"]}
    assert by_profile == {"offline": f"measured ({count})", "replicate": "measured + default"}


def render_remote_book(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, chapters: int, latency_s: float = 2.0
) -> tuple[Path, Path]:
    """A book of `chapters` x 6 one-sentence jobs through the fake Replicate, in virtual
    time: (workspace, manifest). Its profile: base 1 s + 0.5 s per audio second, x3 worst,
    $0.001 per second, 2 s grace."""
    remote_profile(tmp_path)
    manifest = book_manifest(
        tmp_path, chapters=chapters, sentences=6, formats="[flac]", profile="remote.yaml"
    )
    clock = VirtualClock()
    with FakeReplicate(clock, latency_s=latency_s) as fake:
        report = render_virtual(tmp_path, manifest, fake, clock, monkeypatch)
    assert report.exit_code == 0
    return tmp_path, manifest


def test_after_a_remote_render_measured_predict_times_replace_the_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, _ = render_remote_book(tmp_path, monkeypatch, chapters=1)
    with sqlite3.connect(workspace / ".songbatch" / "ledger.db") as conn:
        count, predict_ms, est_ms = conn.execute(
            "SELECT COUNT(*), SUM(r.predict_ms), SUM(j.est_ms) FROM reservations r"
            " JOIN jobs j ON j.key = r.job_key WHERE r.state = 'settled'"
        ).fetchone()
    conn.close()
    assert count == 6 and predict_ms == 6 * 2000  # the fake's 2 s per prediction
    ratio = (predict_ms / 1000) / (count * 1.0 + 0.5 * est_ms / 1000)
    # A second book: chapter 1 is the first book's (done, free), chapter 2 is new.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(tmp_path / "remote.yaml", other / "remote.yaml")
    bigger = book_manifest(other, chapters=2, sentences=6, formats="[flac]", profile="remote.yaml")
    item = only(cost_json(str(bigger), "-w", str(workspace)))
    assert (item["jobs_done"], item["jobs_left"]) == (6, 6)
    assert item["audio_done_s"] == pytest.approx(est_ms / 1000)
    assert item["audio_left_s"] == pytest.approx(est_ms / 1000)  # same sentence lengths
    assert item["time_from"] == "measured (6)"
    [basis] = [b for b in item["basis"] if b["figure"].startswith("predict time")]
    assert basis["value"] == pytest.approx(ratio)
    expected_s = (6 * 1.0 + 0.5 * item["audio_left_s"]) * ratio
    assert item["device_s"] == pytest.approx(expected_s)
    assert item["usd_expected"] == pytest.approx(expected_s * 0.001, abs=6e-6)
    # The worst case stays what the budget reserves: the profile's figures, not the measured.
    worst_s = (6 * 1.0 + 0.5 * item["audio_left_s"]) * 3 + 6 * 2
    assert item["usd_worst"] == pytest.approx(worst_s * 0.001, abs=6e-6)


def test_actual_is_the_ledgers_sums_with_open_reservations_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, manifest = render_remote_book(tmp_path, monkeypatch, chapters=1)
    ledger_path = workspace / ".songbatch" / "ledger.db"
    with Ledger(ledger_path) as ledger:
        key = ledger.conn.execute("SELECT key FROM jobs LIMIT 1").fetchone()[0]
        # As a crash would leave it: reserved, never settled.
        ledger.reserve(
            job_key=key,
            token=None,
            run_id=None,
            model="test/tts",
            model_input={"text": "x"},
            usd=0.0123,
            seconds=12.3,
            caps=SpendCaps(),
        )
        settled, count, day = ledger.conn.execute(
            "SELECT SUM(settled_usd), COUNT(*), MIN(day) FROM reservations WHERE state = 'settled'"
        ).fetchone()
    total = cost_json("--actual", "-w", str(workspace))["total"]
    assert total["settled_usd"] == pytest.approx(settled)
    assert total["predictions"] == count == 6
    assert total["open_usd"] == pytest.approx(0.0123) and total["open_count"] == 1
    assert total["device_ms"] == 0  # no local engine ran
    by_day = cost_json("--actual", "-w", str(workspace), "--by", "day")["rows"]
    assert [row["group"] for row in by_day] == [day]
    by_manifest = cost_json("--actual", "-w", str(workspace), "--by", "manifest")["rows"]
    assert [row["group"] for row in by_manifest] == [str(manifest.resolve())]
    assert by_manifest[0]["settled_usd"] == pytest.approx(settled)
    later = cost_json("--actual", "-w", str(workspace), "--since", "2999-01-01")
    assert later["rows"] == [] and later["total"]["settled_usd"] == 0
    # A time of day is local time (as --until's): last night's batch, not the whole day.
    with sqlite3.connect(ledger_path) as conn:
        [(first, last)] = conn.execute(
            "SELECT MIN(created_utc), MAX(created_utc) FROM reservations WHERE state = 'settled'"
        ).fetchall()
    conn.close()

    def local(utc: str, shift_s: float) -> str:
        moment = datetime.fromisoformat(utc.replace("Z", "+00:00")).timestamp() + shift_s
        return datetime.fromtimestamp(moment).strftime("%Y-%m-%dT%H:%M:%S")

    before = cost_json("--actual", "-w", str(workspace), "--since", local(first, -1))
    assert before["total"]["settled_usd"] == pytest.approx(settled)
    after = cost_json("--actual", "-w", str(workspace), "--since", local(last, 1))
    assert after["total"]["settled_usd"] == 0 and after["total"]["predictions"] == 0
    text = invoke("cost", "--actual", "-w", str(workspace)).output
    assert "1 reservation(s), $0.0123: not settled yet" in text


def test_actual_device_hours_after_an_offline_render(examples: Path, ws: Path) -> None:
    book = examples / "example-book.yaml"
    assert invoke("render", str(book), "-w", str(ws), "-p", "offline", "-q").exit_code == 0
    with sqlite3.connect(ws / ".songbatch" / "ledger.db") as conn:
        render_ms, attempts = conn.execute(
            "SELECT SUM(render_ms), COUNT(*) FROM attempts WHERE render_ms IS NOT NULL"
        ).fetchone()
    conn.close()
    data = cost_json("--actual", "-w", str(ws), "--by", "profile")
    assert [row["group"] for row in data["rows"]] == ["offline"]
    assert data["total"]["device_ms"] == render_ms and data["total"]["renders"] == attempts
    assert data["total"]["settled_usd"] == 0


# --------------------------------------------------------------------------- compare


def test_compare_orders_by_money(examples: Path, ws: Path) -> None:
    shipped_profile(ws, "offline", "cost: {usd_per_device_hour: 0.45}\n")
    shipped_profile(ws, "offline", "cost: {usd_per_device_hour: 100000}\n", rename="pricey")
    album = str(examples / "example-album.yaml")
    data = cost_json(album, "-w", str(ws), "--compare", "pricey,replicate,offline")
    order = [row["profile"] for row in data["compare"]]
    # offline: 48 s x 0.020 = 0.96 device-s and two workers' 1 s start -> $0.00037;
    # replicate: $0.2605; pricey: 2.96 s at $100,000/h -> $82.22.
    assert order == ["offline", "replicate", "pricey"]
    money = {row["profile"]: row["usd_expected"] for row in data["compare"]}
    device_s = 48 * 0.020 + 2 * STARTUP_S
    assert money["offline"] == pytest.approx(device_s / 3600 * 0.45)
    assert money["pricey"] == pytest.approx(device_s / 3600 * 100000)
    assert money["replicate"] == pytest.approx(40 * H100 + 0.20, abs=2e-6)
    text = invoke("cost", album, "-w", str(ws), "--compare", "pricey,replicate,offline").output
    rows = [line for line in text.splitlines() if "│" in line]
    assert [r.split("│")[1].strip() for r in rows] == ["offline", "replicate", "pricey"]


def test_a_profile_without_money_sorts_last(examples: Path, ws: Path) -> None:
    data = cost_json(str(examples), "-w", str(ws), "--compare", "offline,replicate")
    assert [row["profile"] for row in data["compare"]] == ["replicate", "offline"]
    assert data["compare"][1]["usd_expected"] is None
    # The folder stood for both example manifests.
    assert {e["title"] for e in data["estimates"]} == {
        "Harbour Lights",
        "The Lighthouse Keeper's Almanac",
    }


# --------------------------------------------------------------------------- input


@pytest.mark.parametrize(
    ("args", "snippet"),
    [
        ((), "name at least one manifest"),
        (("--actual", "--since", "yesterday"), "--since 'yesterday'"),
        (("--actual", "--by", "week"), "--by 'week'"),
        (("MANIFEST", "--compare", "offline"), "two or more different profiles"),
        (("MANIFEST", "--compare", "offline,offline"), "two or more different profiles"),
        (("MANIFEST", "--compare", "a,b", "--profile", "offline"), "not both"),
        (("MANIFEST", "--since", "2026-01-01"), "go with --actual"),
        (("MANIFEST", "--profile", "nosuch"), "unknown profile 'nosuch'"),
        (("MANIFEST", "--actual"), "give no manifests"),
        (("EMPTY",), "no *.yaml manifest in this folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    examples: Path, ws: Path, tmp_path: Path, args: tuple[str, ...], snippet: str
) -> None:
    (tmp_path / "empty").mkdir()
    named = {
        "MANIFEST": str(examples / "example-book.yaml"),
        "EMPTY": str(tmp_path / "empty"),
    }
    result = invoke("cost", *(named.get(a, a) for a in args), "-w", str(ws))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and snippet in lines[0], result.output
    assert not (ws / ".songbatch").exists()  # cost writes nothing


def test_cost_never_writes_the_ledger(examples: Path, ws: Path) -> None:
    book = examples / "example-book.yaml"
    assert invoke("render", str(book), "-w", str(ws), "-p", "offline", "-q").exit_code == 0
    before = state_bytes(ws)
    for args in ([str(book), "-p", "replicate"], ["--actual"], [str(examples), "-p", "offline"]):
        assert invoke("cost", *args, "-w", str(ws)).exit_code == 0
    assert state_bytes(ws) == before


def test_the_hourly_cap_stops_a_run_and_holds_across_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each job reserves (1 + 0.5 a) x 3 + 2 s at $0.001/s, about $0.008, and settles at its
    2 s ($0.002): a $0.025 hourly cap stops the first run (exit 3); a second run in the same
    hour gets only what the settled costs left; an hour later the window has moved on."""
    remote_profile(tmp_path, caps="  max_spend_per_hour: 0.025")
    manifest = book_manifest(
        tmp_path, chapters=2, sentences=6, formats="[flac]", profile="remote.yaml"
    )
    clock = VirtualClock()
    ledger_path = tmp_path / ".songbatch" / "ledger.db"

    def committed(since: float) -> float:
        with sqlite3.connect(ledger_path) as conn:
            [(usd,)] = conn.execute(
                "SELECT COALESCE(SUM(CASE state WHEN 'open' THEN reserved_usd"
                " ELSE settled_usd END), 0) FROM reservations WHERE created_utc >= ?",
                (datetime.fromtimestamp(since, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),),
            ).fetchall()
        conn.close()
        return float(usd)

    with FakeReplicate(clock, latency_s=2.0) as fake:
        start = clock()
        first = render_virtual(tmp_path, manifest, fake, clock, monkeypatch)
        after_first = len(fake.state.predictions)
        second = render_virtual(tmp_path, manifest, fake, clock, monkeypatch)
        after_second = len(fake.state.predictions)
        assert committed(start) <= 0.025 + 1e-6  # both runs, one hour
        clock.sleep(3600)
        later = clock()
        third = render_virtual(tmp_path, manifest, fake, clock, monkeypatch)
        after_third = len(fake.state.predictions)
    assert first.exit_code == 3 and "hourly spend cap" in str(first.stop_reason)
    assert 0 < after_first < 12 and second.exit_code == 3
    assert after_second > after_first  # settled below their reservations: room freed
    assert after_third > after_second  # a new hour
    assert committed(later) <= 0.025 + 1e-6
    assert third.exit_code in (0, 3)
