"""The local engines through `songbatch render`: a tiny random MusicGen saved to disk and loaded
by the same from_pretrained path as real weights, on a pool of CPU worker processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import soundfile

from helpers.books import album_manifest, run_songbatch, start_render, worker_processes
from helpers.hub_cache import hub_snapshot, offline_hub_env
from helpers.verify import verify_done_exactly_once

pytest.importorskip("torch")
pytest.importorskip("transformers")
from helpers.tiny_musicgen import build_tiny_musicgen


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_musicgen(tmp_path_factory.mktemp("tiny-musicgen"))


def local_profile(folder: Path, model: Path, *, devices: str, batch_size: int) -> Path:
    path = folder / "tiny-local.yaml"
    path.write_text(
        "name: tiny-local\n"
        "speech: {engine: offline, model: espeak-ng}\n"
        f"music: {{engine: musicgen, model: '{model}', batch_size: {batch_size}}}\n"
        f"devices: '{devices}'\n",
        encoding="utf-8",
    )
    return path


def album(folder: Path, durations: list[str], *, profile: str = "tiny-local.yaml") -> Path:
    tracks = [(f"calm piano number {n}", d) for n, d in enumerate(durations, start=1)]
    return album_manifest(
        folder,
        tracks,
        profile=profile,
        title="Tiny Album",
        artist="Random Weights",
        track_title="Piece",
    )


def test_an_album_with_a_continued_track_comes_out_at_its_lengths(
    tmp_path: Path, tiny_model: Path
) -> None:
    local_profile(tmp_path, tiny_model, devices="cpu:1", batch_size=2)
    manifest = album(tmp_path, ["5s", "40s"])
    result = run_songbatch("render", str(manifest), "--workspace", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "outputs" / "tiny-album"
    for name, seconds in [("01 - Piece 1.flac", 5), ("02 - Piece 2.flac", 40)]:
        info = soundfile.info(str(folder / name))
        assert info.samplerate == 32000
        assert info.frames == seconds * 32000
    verify_done_exactly_once(tmp_path)


def test_the_shipped_local_profile_loads_musicgen_small_from_the_hub_cache(
    tmp_path: Path, tiny_model: Path
) -> None:
    """`profile: local` names facebook/musicgen-small: with the tiny model in a Hugging Face
    cache under that id, the worker finds it offline as it finds downloaded weights."""
    hf_home = tmp_path / "hf"
    snapshot = hub_snapshot(hf_home, "facebook/musicgen-small")
    for file in tiny_model.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    manifest = album(tmp_path, ["3s"], profile="local")
    result = run_songbatch(
        "render",
        str(manifest),
        "--workspace",
        str(tmp_path),
        cwd=tmp_path,
        env=offline_hub_env(hf_home),
    )
    assert result.returncode == 0, result.stderr
    assert "no CUDA device found: rendering on the CPU" in result.stderr
    info = soundfile.info(str(tmp_path / "outputs" / "tiny-album" / "01 - Piece 1.flac"))
    assert (info.samplerate, info.frames) == (32000, 3 * 32000)
    verify_done_exactly_once(tmp_path)


@pytest.mark.slow
def test_two_workers_load_the_model_once_each_and_a_killed_one_is_replaced(
    tmp_path: Path, tiny_model: Path
) -> None:
    local_profile(tmp_path, tiny_model, devices="cpu:2", batch_size=1)
    manifest = album(tmp_path, ["12s"] * 8)
    proc = start_render(tmp_path, manifest)
    killed = _kill_one_worker_once_busy(proc, tmp_path)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    loads = [line.split()[2] for line in stderr.splitlines() if " engine-loaded " in line]
    deaths = stderr.count(" worker-died ")
    assert deaths == killed == 1
    # One load per worker process: two at the start, one for the replacement.
    assert sorted(loads) == sorted(["cpu0", "cpu1", loads[-1]])
    assert len(loads) == 3
    verify_done_exactly_once(tmp_path)


def _kill_one_worker_once_busy(proc: subprocess.Popen[str], workspace: Path) -> int:
    deadline = time.monotonic() + 120
    chunks = workspace / ".songbatch" / "chunks"
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if not chunks.exists() or not any(chunks.rglob("*.flac")):
            continue
        workers = worker_processes(proc.pid)
        if workers:
            workers[0].kill()
            return 1
    return 0
