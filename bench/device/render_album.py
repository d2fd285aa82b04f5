"""An album through `songbatch render --profile local` on this machine's GPU, with musicgen-small's
architecture and random weights standing in for facebook/musicgen-small (saved into a temporary
Hugging Face cache under that id, so the worker loads it as it loads downloaded weights).

Checks what only a GPU run shows: the worker's fp16 load, `batch_size: auto` from free memory,
equal-length tracks sharing a generate call, a track continued past 30 s, exact lengths. Part
of bench/device/check.sh; `--model tiny --device cpu` tries it out here.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile
import torch
from transformers import (
    EncodecFeatureExtractor,
    MusicgenForConditionalGeneration,
    MusicgenProcessor,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from gpu import _small_config  # noqa: E402
from helpers.books import album_manifest  # noqa: E402
from helpers.hub_cache import hub_snapshot, offline_hub_env  # noqa: E402
from helpers.tiny_musicgen import (  # noqa: E402
    SAMPLE_RATE,
    build_tiny_musicgen,
    musicgen_generation_config,
    randomise_codebooks,
    tiny_tokenizer,
)

# Distinct prompts: equal ones would be one job. One call loads the engine and measures its
# batch size; the other eight 10 s tracks then share calls of that size.
TRACKS = [(f"calm piano {n}", 10) for n in range(9)] + [("slow ambient guitar", 48)]


def save_random_small(folder: Path) -> None:
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(_small_config())
    randomise_codebooks(model)
    model.generation_config = musicgen_generation_config()
    model.save_pretrained(folder)
    extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE)
    MusicgenProcessor(feature_extractor=extractor, tokenizer=tiny_tokenizer()).save_pretrained(
        folder
    )


def write_album(folder: Path) -> Path:
    tracks = [(prompt, f"{seconds}s") for prompt, seconds in TRACKS]
    return album_manifest(
        folder, tracks, profile="local", title="Device Check", artist="Random Weights"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--model", default="random-small", choices=["random-small", "tiny"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="songbatch-device-") as scratch:
        work = Path(scratch)
        snapshot = hub_snapshot(work / "hf", "facebook/musicgen-small")
        if args.model == "tiny":
            for file in build_tiny_musicgen(work / "tiny").iterdir():
                (snapshot / file.name).write_bytes(file.read_bytes())
        else:
            save_random_small(snapshot)
        manifest = write_album(work)
        devices = "0" if args.device == "cuda" else "cpu"
        command = [sys.executable, "-m", "songbatch", "render", str(manifest)]
        command += ["--workspace", str(work), "--devices", devices]
        env = {**os.environ, **offline_hub_env(work / "hf")}
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        print(result.stderr[-4000:])
        print(f"exit {result.returncode} after {wall:.1f} s")
        if result.returncode != 0:
            return 1
        return report(work)


def report(work: Path) -> int:
    folder = work / "outputs" / "device-check"
    wrong = 0
    for number, (_, seconds) in enumerate(TRACKS, start=1):
        info = soundfile.info(str(folder / f"{number:02d} - Track {number}.flac"))
        exact = info.frames == seconds * info.samplerate
        wrong += not exact
        print(
            f"track {number}: {info.frames / info.samplerate:.3f} s (want {seconds}) exact={exact}"
        )
    with sqlite3.connect(work / ".songbatch" / "ledger.db") as conn:
        rows = conn.execute(
            "SELECT j.est_ms, a.render_ms, j.info FROM jobs j JOIN attempts a"
            " ON a.job_key = j.key AND a.outcome = 'done' ORDER BY j.est_ms"
        ).fetchall()
    for est_ms, render_ms, info in rows:
        notes = json.loads(info)
        print(
            f"job {est_ms / 1000:.0f} s: rendered in {render_ms / 1000:.1f} s, batch"
            f" {notes.get('batch')}, windows {notes.get('windows')}, device {notes.get('device')}"
        )
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
