"""A book through `songbatch render` with the shipped `local` profile, on the REAL chatterbox-tts
0.1.7 code: the tiny random checkpoint sits in a Hugging Face cache, so the worker loads it by
the library's own from_pretrained, exactly as it would load ResembleAI/chatterbox on a user's
machine. `tiny_site/sitecustomize.py` gives every process of the run the two things the library
fixes in code (the Llama shape, and a token budget because random weights never stop).

Runs in the chatterbox environment (`bash .ci/chatterbox-env`); anywhere else it skips.
"""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("chatterbox.tts", reason="needs the chatterbox env: bash .ci/chatterbox-env")

import tiny_chatterbox as tiny
import torch
from mutagen.mp4 import MP4

from helpers.books import run_songbatch
from helpers.hub_cache import hub_snapshot, offline_hub_env
from helpers.verify import verify_done_exactly_once

SITE = Path(__file__).resolve().parent / "tiny_site"
CHAPTERS = [
    ("Dawn", "The harbour woke slowly. Gulls circled the masts."),
    ("Dusk", "Lamps were lit along the quay. The tide turned."),
]


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Hugging Face home whose cache holds the tiny checkpoint as ResembleAI/chatterbox."""
    home = tmp_path_factory.mktemp("hf")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tiny.build_tiny_model(tmp_path_factory.mktemp("tiny"))
        voice = tiny.write_voice(home / "builtin.wav")
        tiny.save_checkpoint(model, hub_snapshot(home, "ResembleAI/chatterbox"), voice)
    torch.set_num_threads(threads)
    yield home


def write_book(folder: Path) -> Path:
    tiny.write_voice(folder / "narrator.wav", seconds=2.0)
    lines = [
        "kind: audiobook",
        "title: Tiny Harbour",
        "author: Random Weights",
        "narrator: A Tiny Chatterbox",
        "language: en-GB",
        "profile: local",
        "formats: [m4b]",
        "speak_titles: false",
        "seed: 3",
        "voice:",
        "  reference: narrator.wav",
        "chapters:",
    ]
    for title, text in CHAPTERS:
        lines += [f"  - title: {title}", f"    text: {text}"]
    path = folder / "book.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_book_renders_through_songbatch_render_with_the_local_profile(
    tmp_path: Path, hf_home: Path
) -> None:
    manifest = write_book(tmp_path)
    env = {
        **offline_hub_env(hf_home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])),
        # One intra-op thread per process: see the `built` fixture in test_chatterbox.py.
        "OMP_NUM_THREADS": "1",
    }
    render = ("render", str(manifest), "--workspace", str(tmp_path))
    result = run_songbatch(*render, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no CUDA device found: rendering on the CPU" in result.stderr  # devices: auto

    book = MP4(tmp_path / "outputs" / "tiny-harbour" / "Tiny Harbour.m4b")
    assert book.tags is not None and book.tags["\xa9nam"] == ["Tiny Harbour"]
    chapters = [c.title for c in book.chapters]
    assert chapters == ["Dawn", "Dusk"]
    spoken = sum(len(text) for _, text in CHAPTERS) / 14  # the profile's chars_per_second
    assert spoken * 0.5 < book.info.length < spoken * 2 + 6  # + pauses between chunks/chapters

    infos = ledger_infos(tmp_path)
    assert len(infos) == 2  # one chunk per chapter: each fits in max_chars
    # The local profile's batch_size 8: both chunks went through one batched token loop.
    assert "up to 8 job(s) per call" in result.stderr
    assert [info["batch"] for info in infos] == [2, 2]
    for info in infos:
        assert info["variant"] == "english" and info["watermarked"] is True
        assert 0.5 <= info["qa_ratio"] <= 2.0
    # The narrator's conditionals were prepared once and cached next to the voice copy.
    voices = tmp_path / ".songbatch" / "voices"
    assert len(list(voices.glob("*.english.conds.pt"))) == 1
    verify_done_exactly_once(tmp_path)

    again = run_songbatch(*render, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert ledger_infos(tmp_path) == infos  # nothing rendered twice


def ledger_infos(workspace: Path) -> list[dict[str, object]]:
    with sqlite3.connect(workspace / ".songbatch" / "ledger.db") as conn:
        rows = conn.execute("SELECT info FROM jobs WHERE state = 'done' ORDER BY key").fetchall()
    return [json.loads(row[0]) for row in rows]
