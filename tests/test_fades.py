"""Album fades, crossfades and segues end to end: the example album rendered through the CLI
with the offline profile (a placeholder sketch of exact length, deterministic in its seed),
once without fades and once with, and the files decoded back (soundfile) and compared."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from helpers.examples import ALBUM_DIR, example_album, invoke, render_offline
from songbatch.errors import ManifestError
from songbatch.fades import apply_fades, fade_in_gain, fade_out_gain
from songbatch.manifest import load_manifest

RATE = 32000  # the offline sketch's rate
LOW_TIDE, LANTERN = 20 * RATE, 28 * RATE  # the example's two tracks, in frames


def album_with(workspace: Path, album: str = "", low_tide: str = "", lantern: str = "") -> Path:
    """The example album (formats [mp3, flac]) with extra lines for the album and each track."""
    path = example_album(workspace)
    text = path.read_text(encoding="utf-8")
    text = text.replace("seed: 3\n", "seed: 3\n" + "".join(f"{x}\n" for x in album.split(";") if x))
    for anchor, extra in (("    duration: 20s\n", low_tide), ("    duration: 28\n", lantern)):
        lines = "".join(f"    {x.strip()}\n" for x in extra.split(";") if x)
        text = text.replace(anchor, anchor + lines)
    path.write_text(text, encoding="utf-8")
    return path


def tracks(workspace: Path, fmt: str = "flac") -> list[npt.NDArray[np.float64]]:
    out = []
    for path in sorted((workspace / "outputs" / ALBUM_DIR).glob(f"*.{fmt}")):
        audio, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
        assert rate == RATE
        out.append(audio)
    assert len(out) == 2
    return out


def rendered(workspace: Path, **lines: str) -> list[npt.NDArray[np.float64]]:
    render_offline(workspace, album_with(workspace, **lines))
    return tracks(workspace)


def rms(audio: npt.NDArray[np.float64]) -> float:
    return float(np.sqrt(np.mean(np.square(audio))))


def expected_gain(frames: int, fade_in_s: float, fade_out_s: float) -> npt.NDArray[np.float64]:
    position = np.arange(frames, dtype=np.int64)
    fade_in, fade_out = round(fade_in_s * RATE), round(fade_out_s * RATE)
    return fade_in_gain(position, fade_in) * fade_out_gain(position, fade_out, frames)


def assert_faded(
    faded: npt.NDArray[np.float64], plain: npt.NDArray[np.float64], fade_in: float, out: float
) -> None:
    """Same length; the fades' gain over the first and last stretch; every sample between them
    exactly the render without fades."""
    assert faded.shape == plain.shape
    head, tail = round(fade_in * RATE), faded.shape[0] - round(out * RATE)
    np.testing.assert_array_equal(faded[head:tail], plain[head:tail])
    gain = expected_gain(faded.shape[0], fade_in, out)[:, None]
    np.testing.assert_allclose(faded, plain * gain, atol=1e-5)


def test_fades_ramp_the_ends_and_leave_the_middle_and_the_length(tmp_path: Path) -> None:
    plain = rendered(tmp_path)
    assert [t.shape[0] for t in plain] == [LOW_TIDE, LANTERN]
    faded = rendered(
        tmp_path, album="fade_in: 1.5s;fade_out: 2", low_tide="fade_in: 3;fade_out: 4s"
    )
    assert [t.shape[0] for t in faded] == [LOW_TIDE, LANTERN]  # exact lengths unchanged
    assert_faded(faded[0], plain[0], 3.0, 4.0)  # the track's own
    assert_faded(faded[1], plain[1], 1.5, 2.0)  # the album's defaults
    for track, fade_in, fade_out in ((faded[0], 3.0, 4.0), (faded[1], 1.5, 2.0)):
        start, end = round(fade_in * RATE), track.shape[0] - round(fade_out * RATE)
        after_fade_in = rms(track[start : start + RATE // 2])
        before_fade_out = rms(track[end - RATE // 2 : end])
        assert rms(track[: RATE // 20]) < after_fade_in / 100  # ~0 at the start
        assert rms(track[-RATE // 20 :]) < before_fade_out / 100  # ~0 at the end
    # Every format is encoded from the faded master: the MP3 carries the fades too.
    mp3s = tracks(tmp_path, "mp3")
    assert [t.shape[0] for t in mp3s] == [LOW_TIDE, LANTERN]
    first = mp3s[0]
    assert rms(first[: RATE // 20]) < rms(first[3 * RATE : 3 * RATE + RATE // 2]) / 30


def test_a_crossfade_is_an_equal_power_pair_of_fades(tmp_path: Path) -> None:
    plain = rendered(tmp_path)
    faded = rendered(tmp_path, album="fade_in: 1;fade_out: 1", low_tide="crossfade: 3s")
    assert_faded(faded[0], plain[0], 1.0, 3.0)  # its fade-out is the crossfade
    assert_faded(faded[1], plain[1], 3.0, 1.0)  # and so is the next track's fade-in
    # Overlapped in a crossfading player, the two gains keep the music's power: sin^2 + cos^2.
    frames = 3 * RATE
    out_gain = expected_gain(LOW_TIDE, 0, 3)[-frames:]
    in_gain = expected_gain(LANTERN, 3, 0)[:frames]
    np.testing.assert_allclose(out_gain**2 + in_gain**2, 1.0, atol=1e-12)


def test_a_segue_has_no_fades_no_silence_and_a_gapless_mp3(tmp_path: Path) -> None:
    plain = rendered(tmp_path)
    segued = rendered(tmp_path, album="fade_in: 2;fade_out: 2", low_tide="segue: true")
    # Low Tide fades in (the album's default) but runs on to its last sample; Lantern Song
    # starts at once and fades out.
    assert_faded(segued[0], plain[0], 2.0, 0.0)
    assert_faded(segued[1], plain[1], 0.0, 2.0)
    np.testing.assert_array_equal(segued[0][-RATE:], plain[0][-RATE:])
    np.testing.assert_array_equal(segued[1][:RATE], plain[1][:RATE])
    # No silence added: the file ends where the rendered audio does. The MP3 says so to
    # gapless players: its LAME tag's encoder delay and padding leave exactly the track.
    [low_tide_mp3] = sorted((tmp_path / "outputs" / ALBUM_DIR).glob("01 *.mp3"))
    frames, delay, padding = lame_gapless(low_tide_mp3)
    assert delay > 0 and padding > 0
    assert frames * 1152 - delay - padding == LOW_TIDE
    assert soundfile.info(str(low_tide_mp3)).frames == LOW_TIDE  # mpg123 honours it


def lame_gapless(path: Path) -> tuple[int, int, int]:
    """(frames, encoder delay, padding) from an MP3's Xing/Info frame and its LAME tag.

    mutagen parses the LAME tag only behind a `LAME` version string, and ffmpeg writes its
    own (`Lavc...`), so the bytes are read here: after the Xing fields, 9 bytes of version,
    12 of tag fields, then 12 bits of delay and 12 of padding (LAME's VbrTag.c layout)."""
    data = path.read_bytes()
    start = 0
    if data[:3] == b"ID3":
        size = data[6:10]
        start = 10 + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])
    found = re.search(rb"Xing|Info", data[start : start + 200])
    assert found is not None, "no Xing/Info frame"
    at = start + found.start()
    flags = int.from_bytes(data[at + 4 : at + 8], "big")
    assert flags & 1, "the Xing header carries no frame count"
    frames = int.from_bytes(data[at + 8 : at + 12], "big")
    at += 8 + 4 * bin(flags & 0b1011).count("1") + (100 if flags & 4 else 0)
    version, fields = data[at : at + 9], data[at + 9 : at + 24]
    assert version[:4] in (b"LAME", b"Lavc", b"Lavf"), version
    delay = fields[12] << 4 | fields[13] >> 4
    padding = (fields[13] & 0x0F) << 8 | fields[14]
    return frames, delay, padding


def test_fades_leave_the_masters_of_tracks_without_them_as_they_were(tmp_path: Path) -> None:
    """A master's key names its fades only when it has some: Low Tide's master (and those
    of every album rendered before fades existed) is reused; only Lantern Song's is new."""
    render_offline(tmp_path, album_with(tmp_path))
    work = tmp_path / ".songbatch" / "work"
    masters = {p for p in work.glob("*.flac") if "-" not in p.stem}
    assert len(masters) == 2
    render_offline(tmp_path, album_with(tmp_path, lantern="fade_out: 5s"))
    now = {p for p in work.glob("*.flac") if "-" not in p.stem}
    assert masters < now and len(now - masters) == 1


def test_fades_are_applied_block_by_block() -> None:
    """Blocks of any size give the same samples as one gain over the whole track."""
    rng = np.random.default_rng(1)
    audio = rng.uniform(-1, 1, (10_000, 2)).astype(np.float32)
    whole = audio * expected_gain(10_000, 3000 / RATE, 7000 / RATE)[:, None].astype(np.float32)
    for size in (1, 777, 4096, 10_000):
        blocks = [audio[i : i + size] for i in range(0, 10_000, size)]
        out = np.concatenate(list(apply_fades(blocks, total=10_000, fade_in=3000, fade_out=7000)))
        np.testing.assert_allclose(out, whole, atol=1e-6)
        # Overlapping fades multiply; the ends reach ~0.
        assert abs(out[0]).max() < 1e-3 and abs(out[-1]).max() < 1e-3


@pytest.mark.parametrize(
    ("album", "low_tide", "lantern", "field", "message"),
    [
        ("", "fade_in: -1", "", "tracks[0].fade_in", "between 0 and 30 seconds, got -1"),
        ("", "fade_out: 31s", "", "tracks[0].fade_out", "between 0 and 30 seconds, got 31"),
        ("", "fade_in: 500", "", "tracks[0].fade_in", "between 0 and 30"),
        ("", "fade_in: soon", "", "tracks[0].fade_in", "cannot read 'soon' as a duration"),
        ("", "fade_in: 25s", "", "tracks[0].fade_in", "25 s fade-in is longer than track 1"),
        ("fade_out: 25", "", "", "fade_out", "give track 1 ('Low Tide') a shorter `fade_out:`"),
        ("", "", "segue: true", "tracks[1].segue", "no next track to segue into"),
        ("", "", "crossfade: 2s", "tracks[1].crossfade", "no next track to crossfade into"),
        ("", "segue: true;fade_out: 2", "", "tracks[0].fade_out", "segues into the next"),
        ("", "segue: true;crossfade: 2", "", "tracks[0].crossfade", "choose one"),
        ("", "crossfade: 2;fade_out: 2", "", "tracks[0].fade_out", "crossfades into the next"),
        ("", "segue: true", "fade_in: 1", "tracks[1].fade_in", "track 1 segues into this one"),
        ("", "crossfade: 21", "", "tracks[0].crossfade", "21 s crossfade is longer than track"),
        ("", "segue: yes", "", "tracks[0].segue", "yes"),
    ],
)
def test_bad_fades_are_one_line_at_their_field(
    tmp_path: Path, album: str, low_tide: str, lantern: str, field: str, message: str
) -> None:
    manifest = album_with(tmp_path, album=album, low_tide=low_tide, lantern=lantern)
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    text = str(info.value)
    assert "\n" not in text
    assert re.match(rf".*example-album\.yaml:\d+:\d+: {re.escape(field)}: ", text), text
    assert message in text, text


def test_a_bad_fade_stops_the_render_with_exit_2(tmp_path: Path) -> None:
    manifest = album_with(tmp_path, lantern="segue: true")
    result = render_offline(tmp_path, manifest, code=2)
    assert "tracks[1].segue: the last track has no next track to segue into" in result.output
    assert not (tmp_path / "outputs").exists()


def test_a_crossfade_longer_than_the_next_track_names_the_crossfade(tmp_path: Path) -> None:
    manifest = album_with(tmp_path, low_tide="crossfade: 19")
    manifest.write_text(
        manifest.read_text(encoding="utf-8").replace("duration: 28", "duration: 10"),
        encoding="utf-8",
    )
    with pytest.raises(ManifestError, match=r"tracks\[0\]\.crossfade: a 19 s crossfade is longer"):
        load_manifest(manifest)


def test_preview_of_a_track_sounds_as_the_rendered_track(tmp_path: Path) -> None:
    """A preview is the opening of the track's own master: its fade-in, and its fade-out
    too once the preview reaches the end."""
    manifest = album_with(tmp_path, low_tide="fade_in: 3;fade_out: 4s")

    def preview(seconds: str) -> npt.NDArray[np.float64]:
        args = ("preview", str(manifest), "--track", "1", "--seconds", seconds)
        result = invoke(*args, "--workspace", str(tmp_path), "--profile", "offline")
        assert result.exit_code == 0, result.output
        [path] = (tmp_path / "previews").glob("*/*.flac")
        audio, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
        assert rate == RATE
        return audio

    opening, whole = preview("5"), preview("60")
    render_offline(tmp_path, manifest)
    low_tide = tracks(tmp_path)[0]
    assert opening.shape[0] == 5 * RATE and whole.shape[0] == LOW_TIDE
    np.testing.assert_array_equal(opening, low_tide[: 5 * RATE])
    np.testing.assert_array_equal(whole, low_tide)
    assert rms(opening[: RATE // 20]) < rms(opening[3 * RATE : 3 * RATE + RATE // 2]) / 100
    assert rms(whole[-RATE // 20 :]) < rms(whole[-5 * RATE : -4 * RATE]) / 100
