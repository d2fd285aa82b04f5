"""Benchmark: a book rendered by songbatch against the same work done directly, side by side.

Alice's chapters I-IV (../shared/corpus/alice.txt, read from there) on the offline profile with
`--devices cpu:N`, measured in one run so the machine's load is shared by all:

- direct: the chunks songbatch plans, rendered by the same offline engine in N processes and
  written as WAV, then one .m4b encode of them all with songbatch's own AAC settings
  (`audio.encode`): the least this work can cost, with no ledger, no masters and no pauses;
- songbatch, m4b only: `songbatch render` of the manifest in a fresh workspace;
- songbatch, mp3 + m4b: the same with a chapter MP3 per chapter too.

Printed: each wall time, songbatch's against the direct one (issue 12's goal: m4b only at most
1.10x, mp3 + m4b at most 1.30x), and the tail: seconds from the last job done to the end of the
render, the assembly nobody can hide behind a device.

    .venv/bin/python bench/pipeline.py [--chapters 4] [--devices 2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from songbatch.audio import encode
from songbatch.engines import EngineSpec, RenderRequest, load_engine
from songbatch.events import RunEvent
from songbatch.manifest import load_manifest
from songbatch.planner import plan_manifest
from songbatch.presets import preset
from songbatch.profiles import resolve_profile
from songbatch.render import RenderOptions, render
from songbatch.tagging import Tags
from songbatch.workspace import Workspace

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "alice.txt"
HEADING = re.compile(r"^CHAPTER ([IVXLC]+)\. (.+)$", re.MULTILINE)


def write_book(folder: Path, chapters: int, formats: str, master: str | None = None) -> Path:
    """A manifest of Alice's first `chapters` chapters, each its own text file; mastered to
    `master`, or with that preset's encodings and no mastering (master: -acx, say)."""
    text = CORPUS.read_text(encoding="utf-8")
    marks = list(HEADING.finditer(text))
    lines = ["kind: audiobook", "title: Alice (bench)", "author: Lewis Carroll"]
    lines += ["language: en", f"formats: [{formats}]", "profile: offline"]
    if master is not None:
        lines += preset_lines(master, formats)
    lines += ["chapters:"]
    for number, mark in enumerate(marks[:chapters], start=1):
        end = marks[number].start() if number < len(marks) else len(text)
        body = folder / f"{number:02d}.txt"
        body.write_text(text[mark.end() : end].strip() + "\n", encoding="utf-8")
        lines += [f"  - title: {mark.group(2)!r}", f"    text_file: {body.name}"]
    manifest = folder / f"book-{formats.replace(', ', '-')}{master or ''}.yaml"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def preset_lines(master: str, formats: str) -> list[str]:
    """`master: NAME`; for `-NAME`, no mastering but the preset's encoding of each format, so
    a book with and one without differ in mastering alone."""
    if not master.startswith("-"):
        return [f"master: {master}"]
    lines = ["encoding:"]
    for fmt in formats.split(", "):
        settings = preset(master[1:]).encoding(fmt)
        fields = {
            "bitrate": settings.bitrate_kbps,
            "sample_rate": settings.sample_rate,
            "channels": settings.channels,
            "mode": settings.mode.value if settings.mode else None,
        }
        chosen = ", ".join(f"{name}: {value}" for name, value in fields.items() if value)
        lines.append(f"  {fmt}: {{{chosen}}}")
    return lines


def planned_requests(manifest: Path, workspace: Workspace) -> list[RenderRequest]:
    loaded = load_manifest(manifest)
    plan = plan_manifest(loaded, resolve_profile("offline", None, workspace), workspace)
    return [job.request.for_engine(job.key, None) for job in plan.jobs]


_ENGINE = None


def _render_one(args: tuple[RenderRequest, str]) -> str:
    global _ENGINE  # one engine per process, as a worker loads it once
    request, path = args
    if _ENGINE is None:
        _ENGINE = load_engine(EngineSpec(kind="speech", engine="offline", model="espeak-ng"), "cpu")
    result = _ENGINE.render([request], lambda: None)[0]
    sf.write(path, result.audio, result.sample_rate, subtype="PCM_16")
    return path


def direct(manifest: Path, work: Path, devices: int) -> tuple[float, float]:
    """The direct baseline: render in `devices` processes, then one m4b encode; the wall
    time, and the encode's part of it."""
    started = time.perf_counter()
    requests = planned_requests(manifest, Workspace(work / "plan-only"))
    paths = [str(work / f"{i:05d}.wav") for i in range(len(requests))]
    with ProcessPoolExecutor(devices) as pool:
        list(pool.map(_render_one, zip(requests, paths, strict=True), chunksize=4))
    rendered = time.perf_counter()
    tags = Tags(title="Alice (bench)", album="Alice (bench)")
    encode([Path(p) for p in paths], work / "direct.m4b", "m4b", tags=tags)
    ended = time.perf_counter()
    return ended - started, ended - rendered


def songbatch(manifest: Path, work: Path, devices: int) -> tuple[float, float, int]:
    """`songbatch render` in a fresh workspace: wall time, tail after the last job, jobs."""
    last_job = [0.0]
    jobs = [0]

    def observe(event: RunEvent) -> None:
        if event.kind == "job-done":
            last_job[0] = time.perf_counter()
            jobs[0] += 1

    started = time.perf_counter()
    options = RenderOptions(Workspace(work), profile="offline", devices=f"cpu:{devices}")
    report = render([manifest], options, observe)
    ended = time.perf_counter()
    if report.exit_code != 0:
        raise SystemExit(f"render exited {report.exit_code}: {report.assembly_errors}")
    return ended - started, ended - last_job[0], jobs[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=4)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all three, alternated")
    parser.add_argument(
        "--master",
        default=None,
        help="a preset (acx...): both books also rendered with it and without it at its"
        " encodings, for what mastering adds (issue 12's goal: at most 25 %%)",
    )
    args = parser.parse_args()
    if args.master is not None:
        return mastering_rounds(args.chapters, args.devices, args.repeat, args.master)
    if not CORPUS.is_file():
        raise SystemExit(f"{CORPUS} not found")
    root = Path(tempfile.mkdtemp(prefix="songbatch-pipeline-"))
    try:
        books = root / "books"
        books.mkdir()
        only_m4b = write_book(books, args.chapters, "m4b")
        both = write_book(books, args.chapters, "mp3, m4b")
        rows: list[tuple[tuple[float, float], tuple[float, float, int], tuple[float, float, int]]]
        rows = []
        for round_ in range(args.repeat):
            base = root / f"direct-{round_}"
            base.mkdir()
            baseline = direct(only_m4b, base, args.devices)
            first = songbatch(only_m4b, root / f"m4b-{round_}", args.devices)
            second = songbatch(both, root / f"both-{round_}", args.devices)
            rows.append((baseline, first, second))
        for number, ((baseline, encoding), first, second) in enumerate(rows, start=1):
            print(f"round {number}: {first[2]} jobs on cpu:{args.devices}")
            print(
                f"  direct (render, one m4b encode)  {baseline:7.1f} s"
                f"  of which the encode {encoding:.1f} s"
            )
            print(
                f"  songbatch, m4b only              {first[0]:7.1f} s"
                f"  {first[0] / baseline:.2f}x (goal <= 1.10)  tail {first[1]:.1f} s"
            )
            print(
                f"  songbatch, mp3 + m4b             {second[0]:7.1f} s"
                f"  {second[0] / baseline:.2f}x (goal <= 1.30)  tail {second[1]:.1f} s"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def mastering_rounds(chapters: int, devices: int, repeat: int, master: str) -> int:
    """Each book rendered without mastering (at the preset's encodings) and with it,
    alternated; what mastering adds to the render's wall time and to its tail."""
    root = Path(tempfile.mkdtemp(prefix="songbatch-pipeline-"))
    try:
        books = root / "books"
        books.mkdir()
        for formats in ("m4b", "mp3, m4b"):
            plain = write_book(books, chapters, formats, f"-{master}")
            mastered = write_book(books, chapters, formats, master)
            for round_ in range(repeat):
                tag = f"{formats.replace(', ', '-')}-{round_}"
                without = songbatch(plain, root / f"plain-{tag}", devices)
                with_ = songbatch(mastered, root / f"mastered-{tag}", devices)
                print(
                    f"{formats:<8} round {round_ + 1}: without {without[0]:6.1f} s"
                    f" (tail {without[1]:.1f} s), {master} {with_[0]:6.1f} s"
                    f" (tail {with_[1]:.1f} s): mastering adds"
                    f" {with_[0] / without[0] - 1:.0%} (goal <= 25 %)"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
