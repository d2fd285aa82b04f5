""".lrc lyrics files: written beside a layered track from its spoken layer's chunk timings,
published and pruned like every output, and refused where no line's time is known."""

from __future__ import annotations

from pathlib import Path

import pytest
from mutagen.flac import FLAC

from helpers.examples import example_album, render_offline
from helpers.layered import (
    ALBUM_DIR,
    POEM,
    START_S,
    TRACK,
    layered_album,
    parse_lrc,
    track_audio,
    track_jobs,
    voice_onset,
)
from songbatch import subtitles
from songbatch.errors import ManifestError
from songbatch.ledger import Ledger
from songbatch.manifest import load_manifest
from songbatch.outputs import planned_outputs
from songbatch.planner import plan_manifest
from songbatch.profiles import resolve_profile
from songbatch.subtitles import Cue
from songbatch.workspace import Workspace


def lrc_path(workspace: Path) -> Path:
    return workspace / "outputs" / ALBUM_DIR / f"{TRACK}.lrc"


def test_lrc_lines_start_where_the_voice_says_them(tmp_path: Path) -> None:
    manifest = layered_album(tmp_path)
    render_offline(tmp_path, manifest)
    lines = parse_lrc(lrc_path(tmp_path))
    assert [text for _, text in lines] == [line for line in POEM if line]
    # Each line's time is where its audio is in the track, found in the mix itself.
    mix = track_audio(tmp_path)
    spoken = track_jobs(tmp_path, manifest)[1:]
    assert len(spoken) == len(lines)
    for (at, _), job in zip(lines, spoken, strict=True):
        heard = voice_onset(mix, job.chunk, at)
        assert at == pytest.approx(heard, abs=0.05)
    assert lines[0][0] == pytest.approx(START_S, abs=0.01)
    # The track's lyrics tag is the same lines.
    assert FLAC(tmp_path / "outputs" / ALBUM_DIR / f"{TRACK}.flac")["LYRICS"] == [
        "\n".join(line for line in POEM if line)
    ]
    # Published like every output: recorded in the ledger with its hash.
    with Ledger.for_reading(Workspace(tmp_path).ledger_path) as ledger:
        [info] = ledger.manifests()
        recorded = {record.path: record for record in ledger.outputs(info.id)}
    assert recorded[str(lrc_path(tmp_path))].fmt == "lrc"


def test_lrc_lines_and_the_lyrics_tag_show_the_words_as_written(tmp_path: Path) -> None:
    poem = ("Dr. Reed lit lamp 3.", "It cost $4 in 1998.")
    render_offline(tmp_path, layered_album(tmp_path, poem=poem))
    assert [text for _, text in parse_lrc(lrc_path(tmp_path))] == list(poem)
    flac = FLAC(tmp_path / "outputs" / ALBUM_DIR / f"{TRACK}.flac")
    assert flac["LYRICS"] == ["\n".join(poem)]


def test_lrc_files_follow_the_manifest(tmp_path: Path) -> None:
    render_offline(tmp_path, layered_album(tmp_path))
    flac = tmp_path / "outputs" / ALBUM_DIR / f"{TRACK}.flac"
    stamp = flac.stat().st_mtime_ns
    assert lrc_path(tmp_path).is_file()
    result = render_offline(tmp_path, layered_album(tmp_path, album=""))
    assert "rendered 0 job(s)" in result.output
    assert not lrc_path(tmp_path).exists()  # no longer planned: removed
    assert flac.stat().st_mtime_ns == stamp  # and the audio left as it was


def test_only_tracks_whose_lines_have_times_get_an_lrc(tmp_path: Path) -> None:
    manifest = layered_album(tmp_path)
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(
        text + "  - {title: Sung, prompt: folk song, duration: 5, lyrics: 'la la la'}\n",
        encoding="utf-8",
    )
    loaded = load_manifest(manifest)
    workspace = Workspace(tmp_path)
    profile = resolve_profile("offline", None, workspace, base_dir=tmp_path)
    spec = plan_manifest(loaded, profile, workspace).record.assembly
    lrcs = [file.path.name for file in planned_outputs(spec) if file.fmt == "lrc"]
    assert lrcs == [f"{TRACK}.lrc"]  # MusicGen-style lyrics have no times: no .lrc


def test_lyrics_files_without_any_timed_track_are_refused(tmp_path: Path) -> None:
    manifest = example_album(tmp_path, extra="\nlyrics_files: [lrc]")
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    text = str(info.value)
    assert "example-album.yaml:" in text and "lyrics_files: no track has timed lyrics" in text
    render_offline(tmp_path, manifest, code=2)


def test_lrc_stamps() -> None:
    cues = [
        Cue(0, 900, "First"),
        Cue(59_995, 61_000, "rounds up\nto the minute"),
        Cue(3_725_004, 3_726_000, "past an hour"),
    ]
    assert subtitles.render("lrc", cues) == (
        "[00:00.00]First\n[01:00.00]rounds up to the minute\n[62:05.00]past an hour\n"
    )
