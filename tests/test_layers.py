"""Layered album tracks end to end: a sketch bed under an espeak-ng poem, rendered through the
CLI with the offline profile and real ffmpeg, the master decoded back and measured against the
bed's own chunk and the voice's chunks; then the mixer's parts on their own."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile

from helpers.examples import REPO, invoke, render_offline
from helpers.layered import (
    BED_GAIN_DB,
    BED_PROMPT,
    PARAGRAPH_S,
    POEM,
    RATE,
    SENTENCE_S,
    START_S,
    TAIL_S,
    bed_gain,
    layered_album,
    read,
    track_audio,
    track_jobs,
    voice_onset,
    without_voice,
)
from songbatch import audio, layers
from songbatch.assemblyspec import MusicLayerSpec, SpeechLayerSpec, UnitSpec
from songbatch.errors import ManifestError
from songbatch.manifest import load_manifest
from songbatch.planner import job_kinds, plan_manifest
from songbatch.profiles import resolve_profile
from songbatch.workspace import Workspace

FULL = 10 ** (BED_GAIN_DB / 20)  # the bed's level where no voice speaks
DUCKED = FULL * 10 ** (-12 / 20)  # and while one does: `duck` unset is 12 dB


def seconds(at: float) -> int:
    return round(at * RATE)


def voice_spans(workspace: Path, manifest: Path) -> list[tuple[float, float]]:
    """Where each spoken chunk is in the mix (start, end in seconds), measured: each chunk
    found in the track by cross-correlation near where the manifest's timing puts it."""
    mix = track_audio(workspace)
    pauses = [SENTENCE_S, PARAGRAPH_S, 0.0]
    at, spans = START_S, []
    for job, pause in zip(track_jobs(workspace, manifest)[1:], pauses, strict=True):
        start = voice_onset(mix, job.chunk, at)
        length = soundfile.info(str(job.chunk)).duration
        spans.append((start, start + length))
        at = start + length + pause
    return spans


def test_a_layered_track_ducks_its_bed_under_the_voice(tmp_path: Path) -> None:
    manifest = layered_album(tmp_path)
    render_offline(tmp_path, manifest)
    jobs = track_jobs(tmp_path, manifest)
    # Each layer is its own jobs: the bed one music job, the poem a speech job per line.
    assert [job.kind for job in jobs] == ["music", "speech", "speech", "speech"]
    assert jobs[0].text == BED_PROMPT
    assert [job.text for job in jobs[1:]] == [line for line in POEM if line]

    mix, bed = track_audio(tmp_path), read(jobs[0].chunk)
    spans = voice_spans(tmp_path, manifest)
    # The voice lands where the manifest puts it: START_S in, then each line and its pause.
    assert spans[0][0] == pytest.approx(START_S, abs=0.01)
    assert spans[1][0] - spans[0][1] == pytest.approx(SENTENCE_S, abs=0.01)
    assert spans[2][0] - spans[1][1] == pytest.approx(PARAGRAPH_S, abs=0.01)
    # The track runs TAIL_S past the last word, and the bed (rendered longer) is cut there.
    assert mix.shape[0] == pytest.approx(seconds(spans[-1][1] + TAIL_S), abs=2)
    assert bed.shape[0] > mix.shape[0]

    # With the voice taken out again, what is left is the bed at the gain the mix gave it.
    speech = [(job.chunk, start) for job, (start, _) in zip(jobs[1:], spans, strict=True)]
    rest = without_voice(mix, speech)

    def gain(first: float, end: float) -> float:
        return bed_gain(rest, bed, seconds(first), seconds(end))

    before = gain(0.2, START_S - layers.DUCK_LEAD_S - 0.05)
    between = gain(spans[1][1] + layers.DUCK_RELEASE_S + 0.2, spans[2][0] - 0.5)
    after = gain(spans[2][1] + layers.DUCK_RELEASE_S + 0.1, spans[2][1] + TAIL_S - 1.6)
    for level in (before, between, after):  # the bed alone plays at its gain_db
        assert level == pytest.approx(FULL, rel=0.02)
    for start, end in spans:  # while a line is spoken the bed is 12 dB down
        inside = start + 0.25 * (end - start), end - 0.25 * (end - start)
        assert gain(*inside) == pytest.approx(DUCKED, rel=0.02)
    # The first syllable is clear: the bed is already down as the voice starts.
    assert gain(START_S, START_S + 0.1) < FULL * 0.3


def test_changing_one_layer_re_renders_only_its_jobs(tmp_path: Path) -> None:
    manifest = layered_album(tmp_path)
    render_offline(tmp_path, manifest)
    first = track_jobs(tmp_path, manifest)
    bed_stamp = first[0].chunk.stat().st_mtime_ns
    master = track_audio(tmp_path)

    changed = tuple(line.replace("stone", "shore") for line in POEM)
    result = render_offline(tmp_path, layered_album(tmp_path, poem=changed))
    assert "rendered 1 job(s)" in result.output
    second = track_jobs(tmp_path, manifest)
    assert second[0].key == first[0].key and second[0].chunk.stat().st_mtime_ns == bed_stamp
    assert second[2].text == "Light on the shore." and second[2].key != first[2].key
    assert (second[1].key, second[3].key) == (first[1].key, first[3].key)
    assert not np.array_equal(track_audio(tmp_path), master)

    result = render_offline(tmp_path, layered_album(tmp_path, poem=changed, prompt="a low drone"))
    assert "rendered 1 job(s)" in result.output
    third = track_jobs(tmp_path, manifest)
    assert third[0].key != second[0].key and [j.key for j in third[1:]] == [
        j.key for j in second[1:]
    ]


def test_a_bed_shorter_than_the_track_loops_with_a_crossfade(tmp_path: Path) -> None:
    manifest = layered_album(tmp_path, bed="duration: 6")
    render_offline(tmp_path, manifest)
    jobs = track_jobs(tmp_path, manifest)
    mix, bed = track_audio(tmp_path), read(jobs[0].chunk)
    assert bed.shape[0] == 6 * RATE < mix.shape[0]
    spans = voice_spans(tmp_path, manifest)
    period = 6 - layers.LOOP_CROSSFADE_S  # each pass starts this long after the last
    # In the tail, past the voice and the bed's own end, the bed's third pass plays on at
    # full level: the mix there is the bed from 2 * period earlier.
    first = spans[-1][1] + layers.DUCK_RELEASE_S + 0.1
    end = mix.shape[0] / RATE - layers.TRIM_FADE_S - 0.1
    assert 2 * period + layers.LOOP_CROSSFADE_S <= first < end <= 3 * period
    m = mix[seconds(first) : seconds(end)]
    b = bed[seconds(first - 2 * period) : seconds(end - 2 * period)]
    assert float((m * b).sum() / (b * b).sum()) == pytest.approx(FULL, rel=0.02)
    # Through the first seam the loop keeps the bed's level (equal power, uncorrelated).
    seam = mix[seconds(period) : seconds(period + layers.LOOP_CROSSFADE_S)]
    assert np.sqrt(np.mean(seam**2)) > 0.3 * np.sqrt(np.mean(bed[: 6 * RATE] ** 2)) * FULL


def test_preview_of_a_layered_track_is_the_opening_of_its_mix(tmp_path: Path) -> None:
    manifest = layered_album(tmp_path, track="fade_in: 1s")
    args = ("preview", str(manifest), "--track", "1", "--seconds", "4")
    result = invoke(*args, "--workspace", str(tmp_path), "--profile", "offline")
    assert result.exit_code == 0, result.output
    assert "4 job(s), 4 rendered now" in result.output
    [preview] = (tmp_path / "previews").glob("*/*.flac")
    opening = read(preview)
    assert opening.shape[0] == 4 * RATE
    result = render_offline(tmp_path, manifest)
    assert "rendered 0 job(s)" in result.output  # the preview rendered every layer's jobs
    np.testing.assert_array_equal(opening, track_audio(tmp_path)[: 4 * RATE])


BAD = [
    ({"bed": "text: hello"}, "tracks[0].layers[0].text", "not both: make two layers"),
    ({"bed": "voice: {params: {rate: 150}}"}, "tracks[0].layers[0].voice", "for spoken layers"),
    ({"bed": "start: 3"}, "tracks[0].layers[0].start", "a music layer runs from the track's"),
    ({"bed": "duck: 50"}, "tracks[0].layers[0].duck", "from 0 to 40 dB, got 50"),
    ({"bed": "duck: loud"}, "tracks[0].layers[0].duck", "must be a number"),
    ({"bed": "promt: waves"}, "tracks[0].layers[0].promt", "did you mean 'prompt'?"),
    ({"voice": "duck: true"}, "tracks[0].layers[1].duck", "`duck` is for music layers"),
    ({"voice": "params: {rate: 150}"}, "tracks[0].layers[1].params", "voice: {params: ...}"),
    ({"voice": "duration: 10"}, "tracks[0].layers[1].duration", "as long as its words"),
    ({"voice": "gain_db: 30"}, "tracks[0].layers[1].gain_db", "from -60 to 12 dB, got 30"),
    ({"track": "prompt: extra"}, "tracks[0].prompt", "belongs in its layers"),
    ({"track": "lyrics: la la"}, "tracks[0].lyrics", "belongs in its layers"),
    ({"album": "lyrics_files: [lrc, lrc]\n"}, "lyrics_files[1]", "'lrc' is listed twice"),
]


@pytest.mark.parametrize(("lines", "field", "message"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_layers_are_one_line_at_their_field(
    tmp_path: Path, lines: dict[str, str], field: str, message: str
) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(layered_album(tmp_path, **lines))
    text = str(info.value)
    assert "\n" not in text
    assert re.match(rf".*night-harbour\.yaml:\d+:\d+: {re.escape(field)}: ", text), text
    assert message in text, text


@pytest.mark.parametrize(
    ("layers_yaml", "field", "message"),
    [
        ("[{prompt: pads}]", "tracks[0].layers", "and one spoken layer"),
        ("[]", "tracks[0].layers", "at least one music layer"),
        ("[{prompt: pads}, {seed: 4}]", "tracks[0].layers[1]", "needs `prompt` (music) or"),
        ("[{prompt: pads}, {text: '* * *'}]", "tracks[0].layers[1].text", "nothing to speak"),
    ],
)
def test_a_track_needs_a_bed_and_a_voice(
    tmp_path: Path, layers_yaml: str, field: str, message: str
) -> None:
    manifest = tmp_path / "album.yaml"
    manifest.write_text(
        f"kind: album\ntitle: T\nartist: A\ntracks:\n  - title: One\n    layers: {layers_yaml}\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError, match=rf"album\.yaml:\d+:\d+: {re.escape(field)}: "):
        load_manifest(manifest)
    with pytest.raises(ManifestError, match=re.escape(message)):
        load_manifest(manifest)


def test_bad_layer_input_stops_the_render_with_exit_2(tmp_path: Path) -> None:
    """A spoken layer's engine params are checked at plan time against the speech engine,
    at the line that set them, before anything is written."""
    manifest = layered_album(tmp_path, voice="voice: {params: {rate: 1000}}")
    result = render_offline(tmp_path, manifest, code=2)
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "tracks[0].layers[1].voice.params.rate:" in result.output
    assert not (tmp_path / "outputs").exists() and not (tmp_path / ".songbatch").exists()


def test_a_remote_profile_refuses_layers_at_their_line(tmp_path: Path) -> None:
    manifest = layered_album(tmp_path)
    loaded = load_manifest(manifest)
    workspace = Workspace(tmp_path)
    profile = resolve_profile("replicate", None, workspace, base_dir=tmp_path)
    with pytest.raises(ManifestError) as info:
        plan_manifest(loaded, profile, workspace)
    assert re.search(r"night-harbour\.yaml:\d+:\d+: tracks\[0\]\.layers: ", str(info.value))
    assert "local profile" in str(info.value) and "'replicate'" in str(info.value)


def test_a_layered_album_needs_both_engines(tmp_path: Path) -> None:
    album = load_manifest(layered_album(tmp_path)).manifest
    assert job_kinds(album) == ["music", "speech"]
    plain = load_manifest(REPO / "manifests" / "example-album.yaml").manifest
    assert job_kinds(plain) == ["music"]


# ---------------------------------------------------------------------- the mixer's parts


def test_ducking_eases_down_before_a_voice_and_holds_across_short_gaps() -> None:
    rate = 1000
    spans = [(1000, 2000), (2500, 3000), (6000, 7000)]
    placed = layers.Layout(rate, 1, 8000, [], [_voice(rate, spans)])
    merged = placed.voiced_spans()
    assert merged == [(1000, 3000), (6000, 7000)]  # 0.5 s apart: one span, no pumping
    depth = layers.duck_depth(np.arange(8000, dtype=np.int64), merged, rate)
    lead, release = round(layers.DUCK_LEAD_S * rate), round(layers.DUCK_RELEASE_S * rate)
    assert depth[: 1000 - lead].max() == 0.0
    assert np.all(np.diff(depth[1000 - lead : 1000]) >= 0) and depth[1000] == 1.0
    assert depth[1000:3000].min() == 1.0
    assert np.all(np.diff(depth[3000 : 3000 + release]) <= 0)
    assert depth[3000 + release : 6000 - lead].max() == 0.0
    # Deterministic and the same in any blocks.
    parts = [layers.duck_depth(np.arange(a, a + 777), merged, rate) for a in range(0, 7770, 777)]
    np.testing.assert_array_equal(np.concatenate(parts), depth[:7770])


def _voice(rate: int, spans: list[tuple[int, int]]) -> layers.VoiceLayer:
    chunks = [layers.PlacedChunk(i, Path("x"), a, b - a) for i, (a, b) in enumerate(spans)]
    return layers.VoiceLayer(1.0, chunks, [[i] for i in range(len(spans))], 0)


def test_fitted_beds_round_up_so_small_edits_keep_the_render() -> None:
    assert layers.fitted_bed_ms([8000], 0) == 15000
    assert layers.fitted_bed_ms([13000], 0) == 30000  # 13 s x 1.25 = 16.25 s
    assert layers.fitted_bed_ms([13100], 0) == layers.fitted_bed_ms([13900], 0)
    assert layers.fitted_bed_ms([8000], 40000) == 45000  # the track's own duration
    assert layers.fitted_bed_ms([10**9], 0) == 3600 * 1000


@pytest.mark.parametrize("minutes", [1, 3])
def test_the_mix_streams_in_flat_memory(tmp_path: Path, minutes: int) -> None:
    """Peak memory of mixing a track with a voice and a bed does not grow with its length
    (a 1-minute stereo track whole is 15 MB as float32)."""
    bed = tmp_path / "bed.flac"
    with soundfile.SoundFile(bed, "w", RATE, 2, subtype="PCM_24", format="FLAC") as out:
        rng = np.random.default_rng(1)
        for _ in range(minutes * 60 // 10):
            out.write(rng.uniform(-0.3, 0.3, (10 * RATE, 2)).astype(np.float32))
    voice = tmp_path / "voice.flac"
    soundfile.write(voice, np.full(22050, 0.1, dtype=np.float32), 22050, subtype="PCM_24")
    meta = UnitSpec(
        0,
        "Track",
        "01 - Track",
        layers=(
            MusicLayerSpec((0, 1), gain_db=-3.0, duck_db=12.0),
            SpeechLayerSpec((1, 3), gain_db=0.0, start_ms=2000, tail_ms=0, lines=(1, 2)),
        ),
        min_ms=minutes * 60_000,
    )
    placed = layers.layout(meta, [bed, voice, voice], [0, 30_000, 0])
    assert placed.total == minutes * 60 * RATE
    tracemalloc.start()
    try:
        mixed = layers.mix_audio(placed, fade_out_ms=3000)
        audio.write_master(mixed, tmp_path / "mix.flac", owner="0123abcd")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 2**20, f"{peak / 2**20:.1f} MiB"
    assert soundfile.info(str(tmp_path / "mix.flac")).frames == placed.total


def test_the_example_album_is_unchanged_by_layers() -> None:
    """Albums without layers plan as before: no `layers` in their units, one job a track."""
    loaded = load_manifest(REPO / "manifests" / "example-album.yaml")
    workspace = Workspace(Path("/nonexistent-songbatch-workspace"))
    profile = resolve_profile("offline", None, workspace, base_dir=loaded.path.parent)
    plan = plan_manifest(loaded, profile, workspace)
    stored = plan.record.assembly.to_dict()
    assert all("layers" not in unit for unit in stored["units"])
    assert "lyrics_files" not in stored
    assert len(plan.rows) == 2
