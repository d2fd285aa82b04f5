"""The maintenance commands through the CLI: `doctor` says whether a profile can run here and what
to do when not; `gc` frees exactly the chunks no planned manifest needs (a render after it
renders nothing new); `preview` renders a unit's opening into the cache the real render reuses."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from typer.testing import CliRunner

from helpers.books import album_manifest, book_manifest, run_songbatch, synthetic_profile
from helpers.examples import example_book, render_offline
from helpers.hub_cache import hub_snapshot
from helpers.layered import POEM, layered_album
from songbatch.cli.main import app
from songbatch.ledger import Ledger, SpendCaps, utc_iso
from songbatch.runlock import RunLock
from songbatch.workspace import resolve_workspace

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def as_json(*args: str, code: int = 0) -> Any:
    result = invoke(*args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def rendered(output: str) -> int:
    found = re.search(r"rendered (\d+) job\(s\)", output)
    assert found is not None, output
    return int(found.group(1))


def chunk_files(workspace: Path) -> set[Path]:
    return set((workspace / ".songbatch" / "chunks").glob("*/*.flac"))


def unit_chunks(workspace: Path) -> dict[int, set[Path]]:
    """Each chapter's recorded chunk files, from the ledger."""
    ws = resolve_workspace(workspace)
    with Ledger.for_reading(ws.ledger_path) as ledger:
        [info] = ledger.manifests()
        return {
            unit: {
                ledger.resolve(job.out_path)
                for job in ledger.unit_jobs(info.id, unit)
                if job.out_path
            }
            for unit in range(len(info.assembly.units))
        }


def render(manifest: Path, workspace: Path) -> int:
    result = invoke("render", str(manifest), "--workspace", str(workspace))
    assert result.exit_code == 0, result.output
    return rendered(result.output)


# ---------------------------------------------------------------------- gc


@pytest.fixture
def rendered_book(tmp_path: Path) -> tuple[Path, Path]:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=3, sentences=2, formats="[flac]")
    assert render(manifest, tmp_path) == 6
    return manifest, tmp_path


def test_gc_after_a_render_frees_only_orphans_and_a_render_after_it_renders_nothing(
    rendered_book: tuple[Path, Path],
) -> None:
    manifest, workspace = rendered_book
    planned = chunk_files(workspace)
    assert len(planned) == 6
    chunks = workspace / ".songbatch" / "chunks"
    # A chunk-named file with no job row (a run killed between its rename and its commit,
    # then re-planned without it), and files songbatch did not write.
    orphan = chunks / "ab" / ("ab" + "0" * 62 + ".flac")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"x" * 1000)
    theirs = [chunks / "ab" / "notes.txt", chunks / "ab" / ("cd" + "0" * 62 + ".flac")]
    for path in theirs:
        path.write_bytes(b"mine")
    report = as_json("gc", "--workspace", str(workspace))
    assert (report["files_removed"], report["orphan_files"], report["bytes_freed"]) == (1, 1, 1000)
    assert report["jobs_dropped"] == 0 and report["kept_jobs"] == 6
    assert not orphan.exists()
    assert all(path.exists() for path in theirs), "a file gc did not write is never touched"
    assert chunk_files(workspace) >= planned
    assert render(manifest, workspace) == 0, "gc removed nothing a planned manifest needs"


def test_gc_after_a_chapter_is_dropped_frees_exactly_that_chapters_chunks_and_master(
    rendered_book: tuple[Path, Path],
) -> None:
    manifest, workspace = rendered_book
    before = unit_chunks(workspace)
    masters = work_files(workspace)
    assert len(masters) == 3  # flac only: a master per chapter, no streams
    text = manifest.read_text(encoding="utf-8")
    kept = re.sub(r"  - title: Chapter 2\n    text: .*\n", "", text)
    assert kept != text
    manifest.write_text(kept, encoding="utf-8")
    assert render(manifest, workspace) == 0  # re-planned: chapter 2's jobs stay as cache
    assert work_files(workspace) == masters  # the other chapters' masters are read again
    dropped = before[1]
    work = workspace / ".songbatch" / "work"
    master_sizes = {name: (work / name).stat().st_size for name in masters}
    sizes = sum(path.stat().st_size for path in dropped)
    with Ledger.for_reading(resolve_workspace(workspace).ledger_path) as ledger:
        runs = ledger.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    dry = as_json("gc", "--dry-run", "--workspace", str(workspace))
    assert (dry["files_removed"], dry["jobs_dropped"], dry["work_files"]) == (3, 2, 1)
    assert all(path.exists() for path in dropped), "a dry run removes nothing"
    assert work_files(workspace) == masters

    report = as_json("gc", "--workspace", str(workspace))
    [gone] = set(masters) - set(work_files(workspace))
    assert (report["files_removed"], report["bytes_freed"], report["jobs_dropped"]) == (
        3,
        sizes + master_sizes[gone],
        2,
    )
    assert dry["bytes_freed"] == report["bytes_freed"]
    assert report["kept_jobs"] == 4
    assert not any(path.exists() for path in dropped)
    assert all(path.exists() for path in before[0] | before[2])
    with Ledger.for_reading(resolve_workspace(workspace).ledger_path) as ledger:
        keys = [path.stem for path in dropped]
        assert ledger.known_keys(keys) == set()
        marks = ",".join("?" * len(keys))
        attempts = ledger.conn.execute(
            f"SELECT COUNT(*) FROM attempts WHERE job_key IN ({marks})", keys
        ).fetchone()[0]
        assert attempts == 0
        assert ledger.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == runs
    again = as_json("gc", "--workspace", str(workspace))
    assert again["files_removed"] == 0 and again["jobs_dropped"] == 0
    kept_masters = work_files(workspace)
    assert render(manifest, workspace) == 0
    assert work_files(workspace) == kept_masters, "no master was built again"


def work_files(workspace: Path) -> dict[str, tuple[int, int]]:
    """The work folder's files (masters, streams), each with its inode and mtime: a file
    built again has another."""
    folder = workspace / ".songbatch" / "work"
    return {
        path.name: (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in folder.iterdir()
        if path.is_file()
    }


def suffixes(names: set[str]) -> list[str]:
    return sorted("".join(Path(name).suffixes) for name in names)


@pytest.mark.parametrize(
    ("extra", "masters"),
    # acx: the mastered master alone (mastered from the chunks, no raw one written)
    [("", [".flac"]), ("\nmaster: acx", [".flac"])],
    ids=["unmastered", "acx"],
)
def test_gc_clears_an_edited_chapters_old_master_and_streams_and_keeps_the_current_ones(
    tmp_path: Path, extra: str, masters: list[str]
) -> None:
    book = example_book(tmp_path, formats="[m4b, mp3-book, mp3]", extra=extra)
    render_offline(tmp_path, book)
    first = work_files(tmp_path)
    text = book.read_text(encoding="utf-8")
    assert "cold and patient" in text
    book.write_text(text.replace("cold and patient", "cold and still"), encoding="utf-8")
    render_offline(tmp_path, book)
    second = work_files(tmp_path)
    # The edit made chapter 1 a new master, and a new stream (with its frame count) for each
    # book format; the old ones stay behind until gc.
    new = set(second) - set(first)
    assert suffixes(new) == sorted([".aac", ".aac.json", *masters, ".mp3", ".mp3.json"])
    work = tmp_path / ".songbatch" / "work"
    theirs = [work / "notes.txt", work / ("0" * 64 + ".wav")]
    for path in theirs:
        path.write_bytes(b"mine")

    sizes = {path: path.stat().st_size for path in [*work.iterdir(), *chunk_files(tmp_path)]}
    dry = as_json("gc", "--dry-run", "--workspace", str(tmp_path))
    assert work_files(tmp_path).keys() == second.keys() | {p.name for p in theirs}
    report = as_json("gc", "--workspace", str(tmp_path))
    after = work_files(tmp_path)
    gone = set(second) - set(after)
    assert suffixes(gone) == suffixes(new), "exactly the edited chapter's old files went"
    assert not gone & new and gone <= set(first)
    assert all(path.exists() for path in theirs), "a file gc did not write is never touched"
    removed = [path for path in sizes if not path.exists()]
    assert report["work_files"] == dry["work_files"] == len(gone)
    assert report["files_removed"] == dry["files_removed"] == len(removed)
    assert report["bytes_freed"] == dry["bytes_freed"] == sum(sizes[p] for p in removed)
    assert as_json("gc", "--workspace", str(tmp_path))["files_removed"] == 0

    render_offline(tmp_path, book)
    assert work_files(tmp_path) == after, "the render reused every master and stream gc kept"


def test_gc_keeps_a_layered_tracks_master_and_loudness_and_clears_an_edited_ones(
    tmp_path: Path,
) -> None:
    render_offline(tmp_path, layered_album(tmp_path))
    first = work_files(tmp_path)
    assert suffixes(set(first)) == [".flac", ".loudness.json"]  # the mix and its ReplayGain
    assert as_json("gc", "--workspace", str(tmp_path))["work_files"] == 0
    assert work_files(tmp_path) == first

    changed = tuple(line.replace("stone", "shore") for line in POEM)
    render_offline(tmp_path, layered_album(tmp_path, poem=changed))
    second = work_files(tmp_path)
    new = set(second) - set(first)
    report = as_json("gc", "--workspace", str(tmp_path))
    after = work_files(tmp_path)
    assert set(after) == new, "the old mix and its loudness went, the new ones stayed"
    assert report["work_files"] == len(first)
    render_offline(tmp_path, layered_album(tmp_path, poem=changed))
    assert work_files(tmp_path) == after


def test_gc_waits_for_no_render_exit_75(rendered_book: tuple[Path, Path]) -> None:
    _manifest, workspace = rendered_book
    orphan = workspace / ".songbatch" / "chunks" / "ab" / ("ab" + "1" * 62 + ".flac")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"x")
    with RunLock(resolve_workspace(workspace).lock_path):
        result = invoke("gc", "--workspace", str(workspace))
    assert result.exit_code == 75, result.output
    assert "another run holds" in result.output
    assert orphan.exists()


def test_gc_keeps_the_rows_of_paid_jobs_and_every_reservation(
    rendered_book: tuple[Path, Path],
) -> None:
    manifest, workspace = rendered_book
    before = unit_chunks(workspace)
    [paid] = sorted(before[2])[:1]
    ws = resolve_workspace(workspace)
    with Ledger(ws.ledger_path) as ledger:
        reservation = ledger.reserve(
            job_key=paid.stem,
            token=None,
            run_id=None,
            model="m",
            model_input={},
            usd=0.5,
            seconds=1.0,
            caps=SpendCaps(),
        )
        ledger.settle(reservation, usd=0.25, predict_ms=1000, outcome="succeeded")
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(re.sub(r"  - title: Chapter 3\n    text: .*\n", "", text), "utf-8")
    assert render(manifest, workspace) == 0
    report = as_json("gc", "--workspace", str(workspace))
    # Chapter 3's two chunks and its master.
    assert report["files_removed"] == 3 and report["jobs_dropped"] == 1
    assert report["paid_kept"] == 1 and report["work_files"] == 1
    assert not paid.exists()
    with Ledger.for_reading(ws.ledger_path) as ledger:
        job = ledger.job(paid.stem)
        assert job is not None and job["state"] == "pending" and job["out_path"] is None
        assert ledger.spend(day=utc_iso(time.time())[:10]) == (0.25, 0.0)
        assert len(ledger.conn.execute("SELECT * FROM reservations").fetchall()) == 1


def test_gc_keeps_a_gone_manifests_chunks_until_asked(rendered_book: tuple[Path, Path]) -> None:
    manifest, workspace = rendered_book
    planned = chunk_files(workspace)
    masters = work_files(workspace)
    assert len(masters) == 3
    manifest.unlink()
    result = invoke("gc", "--workspace", str(workspace))
    assert result.exit_code == 0, result.output
    assert f"missing {manifest}" in result.output and "--forget-missing" in result.output
    assert chunk_files(workspace) == planned and work_files(workspace) == masters
    dry = as_json("gc", "--forget-missing", "--dry-run", "--workspace", str(workspace))
    assert (dry["files_removed"], dry["work_files"]) == (6 + 3, 3)
    assert chunk_files(workspace) == planned and work_files(workspace) == masters
    report = as_json("gc", "--forget-missing", "--workspace", str(workspace))
    assert report["forgotten_manifests"] == [str(manifest)]
    assert report["files_removed"] == 6 + 3 and report["jobs_dropped"] == 6
    assert chunk_files(workspace) == set() and work_files(workspace) == {}
    assert as_json("status", "--workspace", str(workspace)) == []


def test_gc_without_a_ledger_touches_nothing(tmp_path: Path) -> None:
    chunk = tmp_path / ".songbatch" / "chunks" / "ab" / ("ab" + "2" * 62 + ".flac")
    chunk.parent.mkdir(parents=True)
    chunk.write_bytes(b"a lost ledger's chunk: the next render adopts it")
    report = as_json("gc", "--workspace", str(tmp_path))
    assert report["files_removed"] == 0 and chunk.exists()
    assert not (tmp_path / ".songbatch" / "ledger.db").exists()


# ---------------------------------------------------------------------- doctor


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


def test_doctor_says_the_offline_profile_runs_here(tmp_path: Path) -> None:
    report = as_json("doctor", "--profile", "offline", "--workspace", str(tmp_path))
    checks = checks_of(report)
    assert report["can_run"] is True
    for name in ("python", "package songbatch", "ffmpeg", "espeak-ng", "disk", "ledger"):
        assert checks[name]["state"] in ("ok", "info"), checks[name]
    assert checks["espeak-ng"]["needed"] is True and checks["ffmpeg"]["needed"] is True
    assert not (tmp_path / ".songbatch").exists(), "doctor writes nothing"
    table = invoke("doctor", "--profile", "offline", "--workspace", str(tmp_path))
    assert table.exit_code == 0 and "profile offline can run here" in table.output


def test_doctor_counts_cuda_devices_and_their_free_memory_without_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An nvidia-smi stand-in on PATH: the devices and free memory come from it (and
    CUDA_VISIBLE_DEVICES), never from a CUDA context in this process."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-L" ]; then\n'
        "  echo 'GPU 0: NVIDIA H200 (UUID: GPU-a)'; echo 'GPU 1: NVIDIA H200 (UUID: GPU-b)'\n"
        "else\n"
        "  echo '0, NVIDIA H200, 140000, 143771'; echo '1, NVIDIA H200, 512, 143771'\n"
        "fi\n",
        encoding="utf-8",
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    args = ("doctor", "--profile", "offline", "--workspace", str(tmp_path))
    checks = checks_of(as_json(*args))
    assert checks["cuda devices"]["detail"] == "2 visible"
    assert checks["gpu 0"]["detail"] == "NVIDIA H200: 140,000 MiB free of 143,771 MiB"
    assert checks["gpu 1"]["detail"].startswith("NVIDIA H200: 512 MiB free")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    checks = checks_of(as_json(*args))
    assert checks["cuda devices"]["detail"].startswith("1 visible")
    assert "gpu 0" not in checks and "gpu 1" in checks
    # The CLI runner shares pytest's process, where another test may have imported torch:
    # whether doctor imports it is seen in a process of its own.
    probe = (
        "import sys; from songbatch.doctor import diagnose;"
        " from songbatch.workspace import resolve_workspace;"
        f" diagnose(resolve_workspace({str(tmp_path)!r}), 'local');"
        " print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr


def gpu_profile(workspace: Path, variant: str = "english") -> None:
    """Offline speech (needs nothing) beside MusicGen: whether it runs is the weights' say; and
    a Chatterbox profile that doctor reports on without depending on it."""
    folder = workspace / "profiles"
    folder.mkdir(exist_ok=True)
    (folder / "gpu.yaml").write_text(
        "name: gpu\nspeech: {engine: offline, model: espeak-ng}\n"
        "music: {engine: musicgen, model: facebook/musicgen-small}\ndevices: cpu\n",
        encoding="utf-8",
    )
    (folder / "mtl.yaml").write_text(
        "name: mtl\nspeech: {engine: chatterbox, model: ResembleAI/chatterbox,"
        f" params: {{variant: {variant}}}}}\n"
        "music: {engine: offline, model: sketch}\ndevices: cpu\n",
        encoding="utf-8",
    )


def test_doctor_finds_weights_in_the_hugging_face_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not all(importlib.util.find_spec(name) for name in ("torch", "transformers")):
        pytest.skip("the musicgen engine needs the local extra")
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    gpu_profile(tmp_path, variant="multilingual")
    args = ("doctor", "--profile", "gpu", "--workspace", str(tmp_path))
    report = as_json(*args, code=1)
    musicgen = checks_of(report)["weights musicgen (facebook/musicgen-small)"]
    assert musicgen["state"] == "fail" and musicgen["needed"]
    assert "hf download facebook/musicgen-small" in musicgen["fix"]
    table = invoke(*args)
    assert table.exit_code == 1
    assert "fail weights musicgen (facebook/musicgen-small): hf download" in table.output

    snapshot = hub_snapshot(hf_home, "facebook/musicgen-small")
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        (snapshot / name).write_text("{}")
    report = as_json(*args, code=1)
    assert "lacks tokenizer.json or spiece.model" in checks_of(report)[musicgen["name"]]["detail"]
    (snapshot / "spiece.model").write_text("")
    report = as_json(*args)
    assert checks_of(report)[musicgen["name"]]["state"] == "ok"
    # Another profile's weights are information, never the exit code: Multilingual's own
    # tokenizer file is asked for, not only the English files.
    chatterbox = hub_snapshot(hf_home, "ResembleAI/chatterbox")
    for name in ("ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", "tokenizer.json"):
        (chatterbox / name).write_text("")
    mtl = checks_of(as_json(*args))["weights chatterbox multilingual (ResembleAI/chatterbox)"]
    assert mtl["state"] == "info" and not mtl["needed"]
    assert "lacks grapheme_mtl_merged_expanded_v1.json" in mtl["detail"]


@pytest.fixture
def account_server() -> Iterator[tuple[str, list[str]]]:
    """/v1/account: 200 for the token "r8_good..." and a 401 that echoes the header (servers
    and proxies do) for any other."""
    good = "r8_" + "g" * 37
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            calls.append(self.path)
            auth = self.headers.get("Authorization", "")
            if self.path == "/v1/account" and auth == f"Bearer {good}":
                status, body = 200, {"type": "user", "username": "alice", "name": "Alice"}
            else:
                status, body = 401, {"detail": f"Invalid token (you sent {auth})"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


def test_doctor_online_checks_the_replicate_token_and_never_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, account_server: tuple[str, list[str]]
) -> None:
    pytest.importorskip("replicate")
    base_url, calls = account_server
    monkeypatch.setenv("REPLICATE_BASE_URL", base_url)
    args = ("doctor", "--profile", "replicate", "--workspace", str(tmp_path))
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    report = as_json(*args, code=1)
    assert checks_of(report)["replicate token"]["state"] == "fail"

    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_" + "g" * 37)
    report = as_json(*args)  # offline: set is enough, and no call is made
    assert calls == [] and "replicate account" not in checks_of(report)
    report = as_json(*args, "--online")
    assert calls == ["/v1/account"]
    assert checks_of(report)["replicate account"]["detail"] == "token valid for alice"

    bad = "r8_" + "b" * 37
    monkeypatch.setenv("REPLICATE_API_TOKEN", bad)
    result = invoke(*args, "--online")
    assert result.exit_code == 1, result.output
    assert "token was refused (401)" in result.output
    assert bad not in result.output and "[redacted]" in result.output


def test_doctor_reports_a_damaged_ledger_with_what_to_do(tmp_path: Path) -> None:
    state = tmp_path / ".songbatch"
    state.mkdir()
    (state / "ledger.db").write_bytes(b"not a database at all" * 100)
    report = as_json("doctor", "--profile", "offline", "--workspace", str(tmp_path), code=1)
    ledger = checks_of(report)["ledger"]
    assert ledger["state"] == "fail" and "mv " in ledger["fix"]


def test_doctor_with_an_unknown_profile_is_one_line_exit_2(tmp_path: Path) -> None:
    result = invoke("doctor", "--profile", "nosuch", "--workspace", str(tmp_path))
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "unknown profile 'nosuch'" in result.output


# ---------------------------------------------------------------------- preview


def test_preview_renders_a_chapters_opening_that_the_real_render_reuses(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=2, sentences=6, formats="[flac]")
    result = invoke(
        "preview", str(manifest), "--chapter", "2", "--seconds", "3", "--workspace", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    [path] = (tmp_path / "previews").glob("*/*.flac")
    assert "Chapter 2" in path.name
    seconds = sf.info(str(path)).duration
    assert seconds >= 3.0
    previewed = len(chunk_files(tmp_path))
    assert 0 < previewed < 6, "only the opening, never the whole chapter"
    assert as_json("status", "--workspace", str(tmp_path)) == [], "not a planned manifest"
    assert invoke("status", str(manifest), "--workspace", str(tmp_path)).exit_code == 2

    again = invoke(
        "preview", str(manifest), "--chapter", "2", "--seconds", "3", "--workspace", str(tmp_path)
    )
    assert again.exit_code == 0 and f"{previewed} from the cache" in again.output
    assert render(manifest, tmp_path) == 12 - previewed, "the render reuses the preview's chunks"


def test_a_killed_previews_row_is_never_a_planned_manifest(tmp_path: Path) -> None:
    """kill -9 gives a preview no chance to remove its temporary manifest row: `status` does
    not show it, and the next render (or preview, or gc) removes it."""
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=2, sentences=6, formats="[flac]")
    killed = run_songbatch(
        *("preview", str(manifest), "--chapter", "1", "--seconds", "3"),
        *("--workspace", str(tmp_path)),
        cwd=tmp_path,
        env={"SONGBATCH_CRASH_AT": "after-done"},
    )
    assert killed.returncode in (-9, 137), killed.stderr
    ws = resolve_workspace(tmp_path)
    with Ledger.for_reading(ws.ledger_path) as ledger:
        [row] = ledger.manifests()
    assert row.path.startswith("preview:")
    assert as_json("status", "--workspace", str(tmp_path)) == [], "not a planned manifest"
    render(manifest, tmp_path)
    with Ledger.for_reading(ws.ledger_path) as ledger:
        assert [info.path for info in ledger.manifests()] == [str(manifest.resolve())]


def test_preview_of_a_track_keeps_its_key_and_cuts_the_file(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = album_manifest(
        tmp_path, [("calm", "4"), ("loud", "6")], profile="synthetic.yaml", title="Tones"
    )
    result = invoke(
        "preview", str(manifest), "--track", "2", "--seconds", "2", "--workspace", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    [path] = (tmp_path / "previews").glob("*/*.flac")
    assert sf.info(str(path)).duration == pytest.approx(2.0, abs=0.01)
    assert render(manifest, tmp_path) == 1, "the whole track was rendered, once"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--chapter", "3"), "--chapter 3: "),
        (("--track", "1"), "--track is for albums"),
        (("--seconds", "0"), "--seconds 0"),
    ],
)
def test_preview_bad_input_is_one_line_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=2, sentences=1, formats="[flac]")
    result = invoke("preview", str(manifest), *args, "--workspace", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output
    assert not (tmp_path / ".songbatch").exists()
