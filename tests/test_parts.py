"""`parts:` end to end: the example book's .m4b split into numbered parts at chapter bounds,
planned from the estimates (checked here against the planner's chapter estimates, grouped by
hand), each part with its own chapter marks from 0, duration, tags and subtitles; removing
`parts:` prunes the parts and writes the one .m4b; bad `parts:` values are one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4

from helpers.examples import BOOK_DIR, REPO, example_book, render_offline
from songbatch.assemble import Assembler
from songbatch.assemblyspec import PartsSpec
from songbatch.ledger import Ledger
from songbatch.manifest import load_manifest
from songbatch.planner import CHAPTER_LEAD_IN_MS, PARTS_MARGIN, plan_manifest
from songbatch.profiles import resolve_profile
from songbatch.tagging import read_chapters, read_tags
from songbatch.workspace import Workspace

BOOK = "The Lighthouse Keeper's Almanac"
TITLES = ["The Lamp", "The Storm", "The Letter"]


def chapter_estimates(book: Path, ws: Path) -> list[int]:
    """Each chapter's estimated ms as the plan has it: lead-in, jobs and pauses."""
    workspace = Workspace(ws)
    plan = plan_manifest(
        load_manifest(book), resolve_profile("offline", None, workspace), workspace
    )
    est = {job.key: job.est_ms for job in plan.jobs}
    totals = [CHAPTER_LEAD_IN_MS] * len(TITLES)
    for row in plan.rows:
        totals[row.unit] += est[row.key] + row.pause_after_ms
    return totals


def grouped(estimates: list[int], budget: float) -> list[list[int]]:
    groups: list[list[int]] = []
    used = 0.0
    for unit, ms in enumerate(estimates):
        if groups and used + ms <= budget:
            groups[-1].append(unit)
            used += ms
        else:
            groups.append([unit])
            used = ms
    return groups


def test_a_long_book_is_split_into_parts_at_chapter_bounds(tmp_path: Path) -> None:
    book = example_book(tmp_path, extra="\nsubtitles: [srt]\nparts: {max_hours: 0.015}")
    groups = grouped(chapter_estimates(book, tmp_path), 0.015 * 3_600_000 * PARTS_MARGIN)
    assert len(groups) in (2, 3)
    render_offline(tmp_path, book)
    out = tmp_path / "outputs" / BOOK_DIR
    parts = sorted(out.glob("*.m4b"))
    assert [p.name for p in parts] == [f"{BOOK} - Part {n}.m4b" for n in range(1, len(groups) + 1)]
    assert not (out / f"{BOOK}.m4b").exists()
    chapter_files = sorted(out.glob("*.mp3"))
    seen: list[str] = []
    for n, (part, units) in enumerate(zip(parts, groups, strict=True), start=1):
        marks = read_chapters(part)
        assert [title for title, _ in marks] == [TITLES[u] for u in units]
        assert marks[0][1] == 0
        assert [start for _, start in marks] == sorted(start for _, start in marks)
        seen += [title for title, _ in marks]
        # The part is its chapters' masters back to back: the chapter files' lengths, within
        # AAC and MP3 framing.
        expected_s = sum(MP3(chapter_files[u]).info.length for u in units)
        assert abs(MP4(part).info.length - expected_s) <= 0.05 * len(units) + 0.05
        tags = read_tags(part)
        assert tags.album == BOOK
        assert tags.title == f"{BOOK}, Part {n}"
        assert tags.track == (n, len(groups))
        assert tags.disc == (n, len(groups))
        assert tags.cover_bytes
        subtitles = part.with_suffix(".srt")
        assert subtitles.is_file()
        assert subtitles.read_text(encoding="utf-8").startswith("1\n00:00:00,")
    assert seen == TITLES  # every chapter exactly once, in order

    # Back to one .m4b: the parts (and their subtitles) go, the book is whole again.
    example_book(tmp_path, extra="\nsubtitles: [srt]")
    result = render_offline(tmp_path, book)
    assert sorted(p.name for p in out.glob("*.m4b")) == [f"{BOOK}.m4b"]
    assert not list(out.glob("* - Part *"))
    assert [title for title, _ in read_chapters(out / f"{BOOK}.m4b")] == TITLES
    assert read_tags(out / f"{BOOK}.m4b").track is None
    assert "Part 1.m4b" in result.output  # reported as removed


def test_a_part_over_its_limit_is_kept_and_named_for_a_warning(tmp_path: Path) -> None:
    book = example_book(tmp_path, extra="\nparts: {max_hours: 0.015}", formats="[m4b]")
    render_offline(tmp_path, book)
    ledger = Ledger(Workspace(tmp_path).ledger_path)
    [info] = ledger.manifests()
    assembler = Assembler(ledger, Workspace(tmp_path))
    assert assembler.oversized_parts(info) == []
    parts = info.assembly.parts
    assert parts is not None
    tight = dataclasses.replace(info.assembly, parts=dataclasses.replace(parts, max_ms=1000))
    problems = assembler.oversized_parts(dataclasses.replace(info, assembly=tight))
    assert len(problems) == len(parts.groups)
    assert all("over parts' max_hours" in problem for problem in problems)
    small = PartsSpec(parts.groups, max_bytes=1000)
    problems = assembler.oversized_parts(
        dataclasses.replace(info, assembly=dataclasses.replace(tight, parts=small))
    )
    assert problems and all("over parts' max_bytes" in problem for problem in problems)


def test_parts_by_size_keep_every_estimate_inside_the_limit(tmp_path: Path) -> None:
    book = example_book(tmp_path, extra="\nparts: {max_bytes: 1000000}")
    workspace = Workspace(tmp_path)
    plan = plan_manifest(
        load_manifest(book), resolve_profile("offline", None, workspace), workspace
    )
    parts = plan.record.assembly.parts
    assert parts is not None and parts.max_bytes == 1_000_000
    assert sorted(u for group in parts.groups for u in group) == [0, 1, 2]
    # 128 kbit/s (stereo, the larger default) + 2 %: about 16.3 bytes a ms.
    budget = 1_000_000 * PARTS_MARGIN - (REPO / "manifests/example-book/cover.png").stat().st_size
    budget -= 64 * 1024
    estimates = chapter_estimates(book, tmp_path)
    for group in parts.groups:
        size = sum(estimates[u] for u in group) * 16.32
        assert len(group) == 1 or size <= budget


def test_a_chapter_over_the_limit_is_a_part_of_its_own(tmp_path: Path) -> None:
    # 3.6 s: every chapter is over.
    book = example_book(tmp_path, extra="\nparts: {max_hours: 0.001}")
    workspace = Workspace(tmp_path)
    plan = plan_manifest(
        load_manifest(book), resolve_profile("offline", None, workspace), workspace
    )
    assert plan.record.assembly.part_groups() == [[0], [1], [2]]


def test_a_book_that_fits_one_part_plans_as_it_did_without_parts(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    profile = resolve_profile("offline", None, workspace)
    without = plan_manifest(load_manifest(example_book(tmp_path)), profile, workspace)
    fitting = plan_manifest(
        load_manifest(example_book(tmp_path, extra="\nparts: {max_hours: 10}")), profile, workspace
    )
    assert without.record.assembly.parts is None
    assert "parts" not in without.record.assembly.to_dict()
    assert fitting.record.assembly == without.record.assembly
    assert fitting.record.plan_sha256 == without.record.plan_sha256


@pytest.mark.parametrize(
    ("extra", "formats", "field", "words"),
    [
        ("\nparts: {max_hours: 0}", "[m4b, mp3]", "parts.max_hours", "more than 0"),
        ("\nparts: {max_hours: -1}", "[m4b, mp3]", "parts.max_hours", "more than 0"),
        ("\nparts: {max_bytes: 0}", "[m4b, mp3]", "parts.max_bytes", "1000000"),
        (
            "\nparts: {max_hours: 10, max_bytes: 2000000000}",
            "[m4b, mp3]",
            "parts.max_bytes",
            "not both",
        ),
        ("\nparts: {max_minutes: 10}", "[m4b, mp3]", "parts.max_minutes", "unknown field"),
        ("\nparts: {}", "[m4b, mp3]", "parts", "max_hours"),
        ("\nparts: {max_hours: 10}", "[mp3]", "parts", "add m4b"),
    ],
)
def test_bad_parts_are_one_line_errors(
    tmp_path: Path, extra: str, formats: str, field: str, words: str
) -> None:
    book = example_book(tmp_path, extra=extra, formats=formats)
    line = next(
        i
        for i, text in enumerate(book.read_text(encoding="utf-8").splitlines(), 1)
        if text.startswith("parts:")
    )
    result = render_offline(tmp_path, book, code=2)
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert f"example-book.yaml:{line}:" in message
    assert f": {field}: " in message
    assert words in message
    assert not (tmp_path / "outputs").exists()


def test_a_chapter_named_like_a_part_is_refused_when_their_subtitles_would_meet(
    tmp_path: Path,
) -> None:
    book = example_book(tmp_path, extra="\nsubtitles: [srt]\nparts: {max_hours: 0.015}")
    text = book.read_text(encoding="utf-8").replace(
        "  - title: The Storm\n", f"  - title: The Storm\n    file: {BOOK} - Part 2\n"
    )
    book.write_text(text, encoding="utf-8")
    message = render_offline(tmp_path, book, code=2).output.strip()
    assert "chapter 2's file name" in message
    assert "is part 2's" in message
    assert len(message.splitlines()) == 1


def test_parts_by_size_are_sized_at_the_manifests_own_bitrate(tmp_path: Path) -> None:
    """`encoding:` sets the .m4b's bitrate: at a quarter of the default, a quarter the bytes,
    so a limit that splits the book at the default keeps it in fewer parts."""
    workspace = Workspace(tmp_path)

    def groups(extra: str) -> list[list[int]]:
        book = example_book(tmp_path, extra=extra)
        plan = plan_manifest(
            load_manifest(book), resolve_profile("offline", None, workspace), workspace
        )
        return plan.record.assembly.part_groups()

    limit = "\nparts: {max_bytes: 1000000}"
    assert len(groups(limit)) == 3
    assert len(groups(limit + "\nencoding: {m4b: {bitrate: 32}}")) < 3
