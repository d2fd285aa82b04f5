"""Builders for generated manifests and profiles used by the end-to-end and chaos tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]

SENTENCES = [
    "The tide came in at noon.",
    "A gull watched from the rail.",
    "Rope creaked against the post.",
    "Someone was singing below.",
    "The lamp would need oil soon.",
    "Fog crept along the harbour.",
    "Boots rang on the iron stair.",
    "The kettle began to whistle.",
    "A letter lay on the table.",
    "Night fell without a sound.",
]


def synthetic_profile(
    folder: Path,
    *,
    latency_ms: int = 20,
    devices: str = "cpu:4",
    fail_marker: str = "POISON",
    params: str = "",
    extra: str = "",
) -> Path:
    """A profile whose engine is the fixed-latency synthetic one, a plugin (see
    tests/plugins/songbatch_synthetic)."""
    path = folder / "synthetic.yaml"
    path.write_text(
        "name: synthetic\n"
        "speech:\n"
        "  engine: synthetic\n"
        "  model: tone\n"
        f"  params: {{latency_ms: {latency_ms}, fail_marker: {fail_marker}{params}}}\n"
        "  max_chars: 40\n"
        "music:\n"
        "  engine: synthetic\n"
        "  model: tone\n"
        f"  params: {{latency_ms: {latency_ms}, fail_marker: {fail_marker}}}\n"
        f"devices: '{devices}'\n"
        "lease_seconds: 30\n"
        "max_attempts: 3\n" + extra,
        encoding="utf-8",
    )
    return path


def book_manifest(
    folder: Path,
    *,
    chapters: int,
    sentences: int,
    formats: str = "[m4b, flac]",
    profile: str = "synthetic.yaml",
    tag: str = "",
) -> Path:
    """A book of `chapters` x `sentences` one-sentence chunks (max_chars 40): one job each,
    all distinct, plus one title chunk per chapter (speak_titles: false keeps the count exact)."""
    lines = [
        "kind: audiobook",
        f"title: Chaos Book{tag}",
        "author: Test Author",
        f"profile: {profile}",
        f"formats: {formats}",
        "speak_titles: false",
        # The chunks are counted exactly; said in words, "12-17" would outgrow max_chars 40.
        "normalise: false",
        "chapters:",
    ]
    for c in range(chapters):
        text = " ".join(f"{SENTENCES[s % len(SENTENCES)][:-1]} {c}-{s}." for s in range(sentences))
        lines += [f"  - title: Chapter {c + 1}", f'    text: "{text}"']
    path = folder / "book.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def album_manifest(
    folder: Path,
    tracks: list[tuple[str, str]],
    *,
    profile: str,
    title: str,
    artist: str = "Tester",
    track_title: str = "Track",
) -> Path:
    """An album of (prompt, duration) tracks, titled `<track_title> N`, as flac."""
    lines = ["kind: album", f"title: {title}", f"artist: {artist}", f"profile: {profile}"]
    lines += ["formats: [flac]", "tracks:"]
    for number, (prompt, duration) in enumerate(tracks, start=1):
        lines += [
            f"  - title: {track_title} {number}",
            f"    prompt: {prompt}",
            f"    duration: {duration}",
        ]
    path = folder / "album.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def songbatch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "songbatch", *args]


def run_songbatch(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        songbatch_command(*args),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        # Its own process group, like a shell job: crash points kill the group, not pytest.
        start_new_session=True,
    )


def start_render(workspace: Path, manifest: Path, *, quiet: bool = False) -> subprocess.Popen[str]:
    """`songbatch render` in the background, in its own process group (so a test can kill the
    whole run), its output captured unless `quiet`."""
    sink = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        songbatch_command("render", str(manifest), "--workspace", str(workspace)),
        cwd=workspace,
        stdout=sink,
        stderr=sink,
        text=True,
        start_new_session=True,
    )


def worker_processes(pid: int) -> list[psutil.Process]:
    """The run's worker processes (the spawn machinery's resource tracker is a child too)."""
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if "spawn_main" in _command_line(child)]


def _command_line(process: psutil.Process) -> str:
    """A child's command line; empty for one that is gone or a zombie not yet reaped (a worker
    this test just killed, an ffmpeg ending): either way not a live worker."""
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return ""
