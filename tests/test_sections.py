"""A chapter's stream encoded in sections from its chunk files as they arrive (sections.py),
and in a render: sections encoded before the chapter's last job is done.

Real chunk files, real ffmpeg: the joined sections are decoded and compared with one encode of
the master the same chunks make.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.examples import example_book
from songbatch import sections
from songbatch.audio import Segment, assemble_master, segment_frames, write_chunk
from songbatch.engines.base import RenderResult
from songbatch.errors import EngineError, Interrupted
from songbatch.ledger import Ledger
from songbatch.manifest import load_manifest
from songbatch.planner import plan_manifest
from songbatch.presets import Encoding
from songbatch.profiles import resolve_profile
from songbatch.render import RenderOptions, render
from songbatch.streams import STREAM_FORMATS, encode_stream, load_stream
from songbatch.tagging import read_chapters
from songbatch.workspace import Workspace
from test_streams import at_the_last_job, chirp, decoded, found_at

OWNER = "00000000000be0c0"
FMT = "m4b"
DEMUXER = ("-f", STREAM_FORMATS[FMT].demuxer)


def chunk_files(folder: Path, rate: int, count: int) -> list[Path]:
    """Chunks of slightly different lengths (so their places are not frame-aligned), each a
    chirp at its first sample and a little noise after it."""
    rng = np.random.default_rng(7)
    paths = []
    for n in range(count):
        audio = np.zeros(round(rate * (0.9 + 0.037 * n)), dtype=np.float32)
        signal = chirp(rate, 0.5)
        audio[: signal.size] = signal
        audio[signal.size : signal.size + rate // 10] = rng.normal(0, 0.01, rate // 10)
        path = folder / f"c{n:02d}.flac"
        write_chunk(path, RenderResult(audio, rate), key=f"k{n}")
        paths.append(path)
    return paths


def layout(chunks: list[Path], rate: int) -> tuple[list[tuple[Segment, str]], list[Segment]]:
    """The segments as the Assembler lays a chapter out: a lead-in, each chunk, its pause."""
    named = [(Segment(silence_s=0.3), "")]
    for n, path in enumerate(chunks):
        named += [(Segment(path=path), f"sha{n}"), (Segment(silence_s=0.4), "")]
    return named, [segment for segment, _ in named]


def pieces_of(named: list[tuple[Segment, str]], rate: int) -> list[sections.Piece]:
    return sections.place(named, lambda segment, _ident: segment_frames(segment, rate))


def encode_all(
    pieces: list[sections.Piece], cuts: list[sections.Section], folder: Path, rate: int
) -> list[Path]:
    paths = []
    for n, section in enumerate(cuts):
        out = folder / f"section-{n}"
        sections.encode_section(
            pieces, section, out, FMT, Encoding(), rate=rate, channels=1, owner=OWNER
        )
        paths.append(out)
    return paths


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_sections_from_arriving_chunks_decode_to_one_encodes_timeline(
    tmp_path: Path, rate: int
) -> None:
    chunks = chunk_files(tmp_path, rate, 12)
    named, segments = layout(chunks, rate)
    master = tmp_path / "master.flac"
    assemble_master(segments, master, sample_rate=rate, channels=1, owner=OWNER)
    whole = encode_stream(master, tmp_path / "whole", FMT, Encoding(), owner=OWNER)

    pieces = pieces_of(named, rate)
    # The first 7 chunks have arrived: the sections they decide are encoded now ...
    early = sections.cut(pieces[: 1 + 2 * 7], FMT, rate, 2.0, whole=False)
    cuts = sections.cut(pieces, FMT, rate, 2.0, whole=True)
    assert 1 <= len(early) < len(cuts) and cuts[: len(early)] == early  # the same cuts
    parts = encode_all(pieces, cuts, tmp_path, rate)
    joined = sections.join_sections(
        [load_stream(p, FMT) for p in parts],  # type: ignore[misc]
        tmp_path / "joined",
        FMT,
        OWNER,
    )

    one, cut = decoded(whole.path, *DEMUXER), decoded(joined.path, *DEMUXER)
    assert cut.size == one.size == whole.samples == joined.samples
    priming = STREAM_FORMATS[FMT].priming
    for piece in pieces:
        if piece.segment.path is not None:
            start = piece.start + priming
            assert found_at(cut, rate, start - 200, 400) == start
    assert np.abs(cut - one).max() < 0.05  # two encodes of one signal, not two signals
    assert load_stream(joined.path, FMT) == joined


def test_cuts_are_decided_by_the_chunks_before_them(tmp_path: Path) -> None:
    """Whatever has arrived, the sections it decides are the first ones of the whole chapter:
    what was encoded while it rendered is what its assembly asks for."""
    rate = 22050
    named, _ = layout(chunk_files(tmp_path, rate, 12), rate)
    pieces = pieces_of(named, rate)
    final = sections.cut(pieces, FMT, rate, 2.0, whole=True)
    for arrived in range(len(pieces)):
        early = sections.cut(pieces[:arrived], FMT, rate, 2.0, whole=False)
        assert final[: len(early)] == early
        assert all(not s.last for s in early)
    frame = 1024
    for before, after in itertools.pairwise(final):
        assert before.start % frame == 0 and after.start == before.end + frame
        assert (frame + before.end - before.start) % frame == 0


def test_a_sections_key_follows_its_own_chunks_only(tmp_path: Path) -> None:
    rate = 22050
    named, _ = layout(chunk_files(tmp_path, rate, 12), rate)
    pieces = pieces_of(named, rate)
    first, *_rest = sections.cut(pieces, FMT, rate, 2.0, whole=True)

    def key(ps: list[sections.Piece]) -> str:
        return sections.section_key(ps, first, FMT, Encoding(), rate=rate, channels=1)

    later_changed = [*pieces[:-2], sections.Piece(pieces[-2].segment, "other", 0, 0)]
    assert key(later_changed) == key(pieces)  # a chunk after it: the same section
    first_changed = [pieces[0], sections.Piece(pieces[1].segment, "other", 0, 0), *pieces[2:]]
    assert key(first_changed) != key(pieces)  # one of its own re-rendered: another section


def test_a_section_that_cannot_be_read_leaves_nothing(tmp_path: Path) -> None:
    """A chunk that fails mid-feed kills the encoder: no section at its name, no temp file,
    rather than a stream cut short where the input stopped."""
    rate = 22050
    chunks = chunk_files(tmp_path, rate, 6)
    named, _ = layout(chunks, rate)
    pieces = pieces_of(named, rate)
    [whole] = sections.cut(pieces, FMT, rate, 1e9, whole=True)
    chunks[3].write_bytes(chunks[3].read_bytes()[:200])  # damaged after it was laid out
    out = tmp_path / "out" / "section"
    out.parent.mkdir()
    with pytest.raises((EngineError, RuntimeError)):
        sections.encode_section(
            pieces, whole, out, FMT, Encoding(), rate=rate, channels=1, owner=OWNER
        )
    assert list(out.parent.iterdir()) == []


# --------------------------------------------------------------------------- in a render


def test_a_chapters_sections_are_encoded_before_its_last_job_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator is held at the book's last job (before the tracker hears of it, so the
    last chapter is not whole yet; the assembly workers go on): sections of that chapter
    appear, encoded from the chunks that arrived. After the run no section is left, and the
    .m4b has the marks and length of a render that cut no sections."""
    monkeypatch.setattr("songbatch.streams.MIN_SECTION_S", 1e9)
    whole = render_held(tmp_path / "whole", wait_s=60, settled=True)
    monkeypatch.setattr("songbatch.streams.MIN_SECTION_S", 3.0)
    arriving = render_held(tmp_path / "arriving", wait_s=60)
    assert whole[0] == 0  # no section is ever cut: none before the last job
    assert arriving[0] >= 1
    assert arriving[1:] == whole[1:]


def render_held(
    folder: Path, wait_s: float, *, settled: bool = False
) -> tuple[int, list[tuple[str, int]], int]:
    """The example book's .m4b rendered on one device, the coordinator held at its last job
    until a section is on disk (or `wait_s` passed): the sections then, the book's chapter
    marks and its decoded length. `settled`: held instead until no section is on disk, for
    an earlier chapter, finished, has its stream made in sections too, joined and removed as
    the assembly goes on; only a section of the held last chapter stays."""
    book = example_book(folder, formats="[m4b]")
    workspace = Workspace(folder)
    plan = plan_manifest(
        load_manifest(book), resolve_profile("offline", None, workspace), workspace
    )
    found: list[int] = []

    def wait_for_sections(_seen: set[str]) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and bool(found_sections(workspace)) == settled:
            time.sleep(0.05)
        found.append(len(found_sections(workspace)))

    options = RenderOptions(workspace, profile="offline", devices="cpu:1")
    report = render([book], options, at_the_last_job(len(plan.jobs), wait_for_sections))
    assert report.exit_code == 0, report.assembly_errors
    assert found_sections(workspace) == []  # each removed once its chapter's stream was made
    with Ledger.for_reading(workspace.ledger_path) as ledger:
        encodes = {s.fmt: s.count for s in ledger.encode_samples()}
    assert encodes["m4b"] == 1 + max(row.unit for row in plan.rows)  # once a chapter
    [m4b] = (folder / "outputs").rglob("*.m4b")
    return found[0], read_chapters(m4b), decoded(m4b).size


def found_sections(workspace: Workspace) -> list[Path]:
    folder = workspace.sections_dir
    return sorted(folder.glob("*.aac")) if folder.is_dir() else []


def test_a_stopped_renders_sections_are_kept_and_used_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped at the last job (Ctrl-C) once sections are on disk: each left there is whole
    (its count beside it, no temp file), and the next render joins them without encoding any
    again."""
    monkeypatch.setattr("songbatch.streams.MIN_SECTION_S", 3.0)
    book = example_book(tmp_path, formats="[m4b]")
    workspace = Workspace(tmp_path)
    plan = plan_manifest(
        load_manifest(book), resolve_profile("offline", None, workspace), workspace
    )

    def stop_once_sections_are_there(_seen: set[str]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not found_sections(workspace):
            time.sleep(0.05)
        raise KeyboardInterrupt

    options = RenderOptions(workspace, profile="offline", devices="cpu:1")
    with pytest.raises(Interrupted):
        render([book], options, at_the_last_job(len(plan.jobs), stop_once_sections_are_there))
    left = found_sections(workspace)
    assert left
    assert sorted(p.name for p in workspace.sections_dir.iterdir()) == sorted(
        [p.name for p in left] + [p.name + ".json" for p in left]
    )
    assert all(load_stream(p, FMT) is not None for p in left)

    encoded: list[Path] = []
    real = sections.encode_section

    def counted(*args: object, **kwargs: object) -> object:
        encoded.append(args[2])  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sections, "encode_section", counted)
    report = render([book], options)
    assert report.exit_code == 0, report.assembly_errors
    assert not set(left) & set(encoded)
    assert found_sections(workspace) == []
