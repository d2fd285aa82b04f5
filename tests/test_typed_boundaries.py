"""The typed boundaries (assemblyspec.AssemblySpec, engines.base.JobRequest) write the ledger's
JSON exactly as the dicts they replaced did, so a workspace planned before them plans, renders
and assembles nothing again.

The digests below were taken with the code of before (the dicts): the example manifests, as
shipped and with every optional part of a spec set (parts, credits, master, encoding,
subtitles, publishing tags, fades, a layered track and its .lrc), planned into a real ledger;
then the spec and requests as stored, the plan rows (job keys), and every key derived from the
spec (raw and mastered masters, streams, output files, tags, silences, planned paths), with
made-up chunk hashes and chapter marks in place of rendered ones. Workspace paths are written
as `<ws>`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.examples import example_album, example_book
from helpers.layered import layered_album
from songbatch import layers
from songbatch.assemble import (
    _book_tags,
    _tags,
    joined_formats,
    output_key,
    raw_master_key,
    stream_key,
    unit_silences,
)
from songbatch.assemblyspec import AssemblySpec, SpecTags
from songbatch.audio import ChapterMark
from songbatch.engines.base import EngineSpec, JobRequest, RenderRequest
from songbatch.ledger import JobState, Ledger, ManifestInfo
from songbatch.manifest import load_manifest
from songbatch.mastering import mastered_key
from songbatch.outputs import book_stems, planned_outputs
from songbatch.planner import (
    Plan,
    _music_request,
    _spoken_job,
    commit_plan,
    job_key,
    plan_manifest,
)
from songbatch.presets import preset, spec_encoding
from songbatch.profiles import resolve_profile
from songbatch.tagging import PUBLISHING_TAGS
from songbatch.workspace import Workspace

WS = "<ws>"
PUBLISHING = (
    "\nsubtitle: A Year at the Light\npublisher: Example Press\nseries: Almanacs"
    "\nseries_part: 2\nisbn: '9780306406157'\nasin: B000000000"
)


def _everything(ws: Path) -> Path:
    return example_book(
        ws,
        formats="[m4b, mp3, mp3-book]",
        extra="\nsubtitles: [srt, vtt]\nmaster: acx"
        "\nencoding: {mp3: {bitrate: 96, mode: cbr}, m4b: {bitrate: 64}}"
        "\nparts: {max_hours: 0.015}\ncredits: {opening: true, closing: true}" + PUBLISHING,
    )


def _bytes(ws: Path) -> Path:
    """Parts by size, no cover, no narrator."""
    path = example_book(
        ws,
        formats="[m4b]",
        extra="\nparts: {max_bytes: 1000000}"
        "\nencoding: {m4b: {bitrate: 320, channels: 2, sample_rate: 48000}}",
    )
    text = path.read_text(encoding="utf-8")
    text = text.replace("cover: example-book/cover.png\n", "")
    path.write_text(text.replace("narrator: The Offline Voice\n", ""), encoding="utf-8")
    return path


def _album_fades(ws: Path) -> Path:
    path = example_album(
        ws,
        formats="[mp3, flac, opus]",
        extra="\nencoding: {mp3: {mode: vbr}, flac: {sample_rate: 44100}, opus: {bitrate: 96}}"
        "\nfade_in: 1.5\nfade_out: 2",
    )
    text = path.read_text(encoding="utf-8")
    text = text.replace("    duration: 20s\n", "    duration: 20s\n    crossfade: 3\n")
    path.write_text(text, encoding="utf-8")
    return path


def _layered(ws: Path) -> Path:
    return layered_album(ws, album="lyrics_files: [lrc]\nfade_out: 1\n", track="duration: 12")


SCENARIOS: dict[str, Callable[[Path], Path]] = {
    "book": example_book,
    "album": example_album,
    "book-everything": _everything,
    "book-bytes": _bytes,
    "album-fades": _album_fades,
    "layered": _layered,
}

# name: (stored spec, plan rows, stored requests, derived keys), sha256 of each as taken before.
PINNED = {
    "book": (
        "7f8c18010a9c08c83558cf117d57fa78f7f083473cd5fae379cf28cccf474518",
        "9c4d87d2503d29716a9795404d50cb4099d31cda8d0253a9d11a9d33d80b87ab",
        "39bd3e3098d4cb391cf584d0559b84e7e40772b6e71c3608d53537ec339c8149",
        "847927a5bd786986bd8708ecfc733a26eb237de2cf2de7ea88a14ef248df377d",
    ),
    "album": (
        "10c96b99142a7e954124ed3c8fa5491e9896c6d8067cd73fb4fe5f6076db2ef1",
        "204595289ec62409e2b46d64ae5f5b3419526d3b3447c3c14add80d5d86f3425",
        "3ee4ef2bc933500c8395646823d38eebb34c6ad0316dff0e65b5eab0ad02153f",
        "e62c95d7831e5f8903ad06daf7ebb60c6ddee3987664b27bb9542945f7c9f3db",
    ),
    "book-everything": (
        "dcca2c972345ee7fc26a2618b7901c947c4dc14896da06b1723725cfbc8d1456",
        "4394bdb8a51fe8cf39eaed346beea3aa854ee0ec163fe10ffcbad296e6537862",
        "fa1020a61ee98441e80d0af386cbb51252d78eeb094fa2eea87240f7f311783c",
        "d029a78bc8a70100f23dc344ceb1af81b730d2b132c67359ab0be8340eb96833",
    ),
    "book-bytes": (
        "8b1a523ef2a07e39c49a7790b51c885dae1866d9fa6c7a797a4560a5e8834cf7",
        "9c4d87d2503d29716a9795404d50cb4099d31cda8d0253a9d11a9d33d80b87ab",
        "39bd3e3098d4cb391cf584d0559b84e7e40772b6e71c3608d53537ec339c8149",
        "151e524e52b0ad59afde241d821590355c9a951a09c91f08be4c1e683f400dbb",
    ),
    "album-fades": (
        "248f409586d9a1b523e93bfb98e4d3e2af6b5c5029e2a18e210995c9811b39f7",
        "204595289ec62409e2b46d64ae5f5b3419526d3b3447c3c14add80d5d86f3425",
        "3ee4ef2bc933500c8395646823d38eebb34c6ad0316dff0e65b5eab0ad02153f",
        "e6d4c0a669d8394ebe3c73854bf0d38e40c740af1b71516b38e1b15722048a1d",
    ),
    "layered": (
        "d9a4e257216135a01c3a9feb1e9f3edca8b59b0423c1fb11c32f246921a5b6e3",
        "3a2f6b453b57ec4c951dfc9d5d3787d96b4f9787a2b94c823b2d10c6b0fd8d53",
        "8115b07d2b26bcd9b7791dfc92eb1b1b2e8206493e532a776a7dd84a0ebf7b35",
        "2ca8956e92d2d140e9a4b9229a0e798eb524ca8ac080cf6705e7afb99b73718e",
    ),
}

# Two specs as the code of before stored them, whole: a layered track (its layers are digested
# into its master's key as stored) and a book with every field that is stored only when set.
_COVER = "c74263036d010c9f87c90401327ab75498fd394c6fa741c3e5960911e1ec8b05"
OLD_SPECS = {
    "layered": (
        '{"book_file":"Night Harbour","cover":null,"cover_sha256":null,"formats":["flac"],'
        '"kind":"album","lead_in_ms":0,"lyrics_files":["lrc"],'
        '"output_dir":"<ws>/outputs/night-harbour","tags":{"album":"Night Harbour",'
        '"album_artist":"The Example Ensemble","artist":"The Example Ensemble",'
        '"comment":"SKETCH: placeholder audio from songbatch\'s offline engine,'
        ' not a real render","description":null,"genre":null,"year":null},'
        '"units":[{"fade_out_ms":1000,"file":"01 - Lantern Voice","layers":[{"duck_db":12.0,'
        '"gain_db":-3.0,"kind":"music","seqs":[0,1]},{"gain_db":0.0,"kind":"speech",'
        '"lines":[1,2,3],"seqs":[1,4],"start_ms":2000,"tail_ms":3000}],"min_ms":12000,'
        '"title":"Lantern Voice","unit":0}]}'
    ),
    "book-everything": (
        '{"book_file":"The Lighthouse Keeper\'s Almanac",'
        f'"cover":"<ws>/.songbatch/covers/{_COVER}",'
        f'"cover_sha256":"{_COVER}",'
        '"encoding":{"m4b":{"bitrate":64},"mp3":{"bitrate":96,"mode":"cbr"}},'
        '"formats":["m4b","mp3","mp3-book"],"kind":"audiobook","lead_in_ms":500,'
        '"master":"acx","output_dir":"<ws>/outputs/the-lighthouse-keeper-s-almanac",'
        '"parts":{"groups":[[0,1],[2],[3],[4]],"max_ms":54000},"subtitles":["srt","vtt"],'
        '"tags":{"album":"The Lighthouse Keeper\'s Almanac","album_artist":"A. N. Example",'
        '"artist":"A. N. Example","asin":"B000000000",'
        '"comment":"Rendered by songbatch with offline (espeak-ng)",'
        '"description":"Three short chapters about a lighthouse, written to test songbatch.",'
        '"genre":"Audiobook","isbn":"9780306406157","language":"en-GB",'
        '"narrator":"The Offline Voice","publisher":"Example Press","series":"Almanacs",'
        '"series_part":"2","subtitle":"A Year at the Light","year":2024},'
        '"units":[{"file":"00 - Opening Credits","title":"Opening Credits","unit":0},'
        '{"file":"01 - The Lamp","title":"The Lamp","unit":1},{"file":"02 - The Storm",'
        '"title":"The Storm","unit":2},{"file":"03 - The Letter","title":"The Letter",'
        '"unit":3},{"file":"04 - Closing Credits","title":"Closing Credits","unit":4}]}'
    ),
}


def stored(value: Any) -> str:
    """As the ledger writes JSON."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass
class Planned:
    root: str
    plan: Plan
    info: ManifestInfo
    spec_text: str  # as stored, the workspace's path as it is
    rows: list[list[Any]]
    requests: dict[str, str]  # key -> the stored request


def planned(workspace: Path, name: str) -> Planned:
    """`name`'s manifest planned with the offline profile into a ledger in `workspace`, and
    what the ledger holds of it, read by SQL as the text it stored."""
    manifest = SCENARIOS[name](workspace)
    ws = Workspace(workspace)
    plan = plan_manifest(load_manifest(manifest), resolve_profile("offline", None, ws), ws)
    ws.ledger_path.parent.mkdir(parents=True, exist_ok=True)
    with Ledger(ws.ledger_path) as ledger:
        commit_plan(ledger, plan, ws)
        [info] = ledger.manifests()
    conn = sqlite3.connect(ws.ledger_path)
    try:
        [(spec_text,)] = conn.execute("SELECT assembly FROM manifests").fetchall()
        requests = dict(conn.execute("SELECT key, request FROM jobs ORDER BY key").fetchall())
        rows = [
            list(row)
            for row in conn.execute(
                "SELECT unit, seq, job_key, pause_after_ms FROM manifest_jobs ORDER BY unit, seq"
            )
        ]
    finally:
        conn.close()
    return Planned(str(workspace.resolve()), plan, info, spec_text, rows, requests)


def derived(item: Planned, ledger: Ledger) -> dict[str, Any]:
    """Every key assembly derives from the spec, with made-up chunk hashes and chapter marks."""
    spec, root = item.info.assembly, item.root

    def shown(tags: Any) -> dict[str, str]:
        return {k: str(v).replace(root, WS) for k, v in vars(tags).items()}

    requests = ledger.job_requests(list(item.requests))
    chosen = preset(spec.master)
    units: list[dict[str, Any]] = []
    masters: dict[int, str] = {}
    lyrics_of: dict[int, str | None] = {}
    for meta in spec.units:
        jobs = [
            dataclasses.replace(
                job,
                state=JobState.DONE,
                sha256=hashlib.sha256(f"{job.key}:audio".encode()).hexdigest(),
                out_path=f"c/{job.key}",
                duration_ms=1000 + job.seq,
            )
            for job in ledger.unit_jobs(item.info.id, meta.unit)
        ]
        raw = raw_master_key(spec, meta.unit, jobs)
        masters[meta.unit] = mastered_key(raw, chosen) if chosen.masters else raw
        lyrics = None
        if spec.kind == "album" and meta.layered:
            texts = [requests[job.key].text for job in jobs]
            lyrics = "\n".join(layers.lyric_lines(meta, texts)) or None
        elif spec.kind == "album":
            written = requests[jobs[0].key].lyrics
            lyrics = written if written is not None and written.strip() else None
        lyrics_of[meta.unit] = lyrics
        tags = _tags(spec, meta.title, track=(meta.unit + 1, len(spec.units)), lyrics=lyrics)
        units.append(
            {
                "raw": raw,
                "master": masters[meta.unit],
                "streams": {
                    fmt: stream_key(masters[meta.unit], fmt, spec_encoding(spec, fmt))
                    for fmt in joined_formats(spec)
                },
                "silences": unit_silences(spec, jobs),
                "tags": shown(tags),
            }
        )
    groups = spec.part_groups()
    parts = [part for part, _stem in book_stems(spec)]
    outputs: list[dict[str, Any]] = []
    for file in planned_outputs(spec):
        entry: dict[str, Any] = {
            "path": str(file.path).replace(root, WS),
            "unit": file.unit,
            "fmt": file.fmt,
            "part": file.part,
        }
        encoding = spec_encoding(spec, file.fmt)
        if file.subtitle:
            pass
        elif file.unit is not None:
            meta = spec.units[file.unit]
            track = (file.unit + 1, len(spec.units))
            tags = _tags(spec, meta.title, track=track, lyrics=lyrics_of[file.unit])
            entry["key"] = output_key(
                [masters[file.unit]], file.fmt, tags, spec.cover_sha256, None, encoding
            )
        else:
            group = groups[parts.index(file.part)]
            marks = [
                ChapterMark(spec.units[unit].title, i * 1000, (i + 1) * 1000)
                for i, unit in enumerate(group)
            ]
            tags = _book_tags(spec, file.part, len(groups))
            entry["key"] = output_key(
                [masters[unit] for unit in group],
                file.fmt,
                tags,
                spec.cover_sha256,
                marks,
                encoding,
                joined=True,
            )
            entry["tags"] = shown(tags)
        outputs.append(entry)
    return {"units": units, "outputs": outputs}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_stored_json_and_every_key_are_as_before_the_types(tmp_path: Path, name: str) -> None:
    item = planned(tmp_path, name)
    spec_pin, rows_pin, requests_pin, derived_pin = PINNED[name]
    shown = item.spec_text.replace(item.root, WS)
    assert hashlib.sha256(shown.encode("utf-8")).hexdigest() == spec_pin, shown
    assert digest(item.rows) == rows_pin
    assert digest(list(item.requests.values())) == requests_pin
    # The plan hash is the stored spec's and the rows': unchanged with them.
    stored = json.loads(item.spec_text)
    assert item.plan.record.plan_sha256 == job_key({"assembly": stored, "rows": item.rows})
    with Ledger.for_reading(Workspace(tmp_path).ledger_path) as ledger:
        keys = derived(item, ledger)
    assert digest(keys) == derived_pin, json.dumps(keys, indent=1)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_spec_round_trips_through_its_json(tmp_path: Path, name: str) -> None:
    item = planned(tmp_path, name)
    spec = item.plan.record.assembly
    assert AssemblySpec.from_dict(spec.to_dict()) == spec
    assert item.info.assembly == spec  # read back from the ledger's text
    assert stored(AssemblySpec.from_dict(json.loads(item.spec_text)).to_dict()) == item.spec_text
    for job in item.plan.jobs:
        assert JobRequest.from_dict(job.request.to_dict()) == job.request
        text = item.requests[job.key]
        assert stored(JobRequest.from_dict(json.loads(text)).to_dict()) == text


@pytest.mark.parametrize("name", list(OLD_SPECS))
def test_a_spec_an_older_songbatch_stored_loads_as_planning_it_now_gives(
    tmp_path: Path, name: str
) -> None:
    """The manifest's row as the code before the types wrote it: the ledger reads it back as
    the spec that planning the same manifest gives now, so nothing is planned again."""
    item = planned(tmp_path, name)
    conn = sqlite3.connect(Workspace(tmp_path).ledger_path)
    with conn:
        conn.execute("UPDATE manifests SET assembly = ?", (OLD_SPECS[name].replace(WS, item.root),))
    conn.close()
    with Ledger.for_reading(Workspace(tmp_path).ledger_path) as ledger:
        [info] = ledger.manifests()
    assert info.assembly == item.plan.record.assembly


def test_spec_tags_carry_every_publishing_field() -> None:
    """A publishing field the tagger learns must be a spec tag too (assembly reads it there)."""
    names = {field.name for field in dataclasses.fields(SpecTags)}
    assert set(PUBLISHING_TAGS) <= names


def test_job_keys_and_stored_requests_are_as_before_the_types() -> None:
    """A job's key and its stored request for the same inputs, as the code of before made
    them (every planned job's are pinned above too, by digest)."""
    speech = EngineSpec("speech", "offline", "espeak-ng", params={"voice": "en"})
    music = EngineSpec("music", "offline", "sketch")
    params = {"language": "en-GB", "exaggeration": 0.5}
    jobs = [
        _spoken_job(speech, "The tide came in at noon.", params, "ab" * 32, 7, 14.0),
        _spoken_job(speech, "Night fell.", {"language": "en"}, None, 0, 14.0),
        _music_request(music, "calm piano", "La la", 28000, {"guidance_scale": 4.0}, 5),
        _music_request(music, "calm piano", None, 20500, {}, 3),
    ]
    assert [job.key for job in jobs] == [
        "21812a4682bf0f36ec486ced795fe456ebc49b2dae8df47a3931071cb6a4b9ee",
        "cd53f5a8f0b7f555f8ae6a6e2e1b8af00e33028d5ac064790b4049d569203ac7",
        "cc6bbbd625fc2c3a107d3f7c11f56f135d3e82b3fa53337816c3147f2c7d03e1",
        "80ad0fc25420240282693919efb2d11f1fcf488b7704ee553cf7add74005eb15",
    ]
    assert [stored(job.request.to_dict()) for job in jobs] == [
        '{"kind":"speech","params":{"exaggeration":0.5,"language":"en-GB"},"seed":7,'
        '"text":"The tide came in at noon.","voice":"' + "ab" * 32 + '"}',
        '{"kind":"speech","params":{"language":"en"},"seed":0,"text":"Night fell.","voice":null}',
        '{"duration_s":28.0,"kind":"music","lyrics":"La la","params":{"guidance_scale":4.0},'
        '"seed":5,"text":"calm piano"}',
        '{"duration_s":20.5,"kind":"music","lyrics":null,"params":{},"seed":3,"text":"calm piano"}',
    ]
    assert [(job.chars, job.est_ms) for job in jobs] == [
        (25, 1786),
        (11, 786),
        (15, 28000),
        (10, 20500),
    ]


def test_a_request_reaches_its_engine_as_the_worker_built_it_before() -> None:
    """What a worker hands the engine is the stored request, the voice as the file's path."""
    speech = JobRequest("speech", "Hello.", 7, {"language": "en"}, voice="ab" * 32)
    assert speech.for_engine("k", "/voices/ab.wav") == RenderRequest(
        key="k",
        kind="speech",
        text="Hello.",
        seed=7,
        params={"language": "en"},
        voice_path="/voices/ab.wav",
    )
    music = JobRequest.from_dict(
        {"kind": "music", "text": "piano", "lyrics": "La", "duration_s": 20.5, "seed": 3}
    )
    assert music.params == {}  # a row without params reads as none, as the worker read it
    assert music.for_engine("m", None) == RenderRequest(
        key="m", kind="music", text="piano", seed=3, lyrics="La", duration_s=20.5
    )


def test_a_request_holds_only_its_own_kinds_fields() -> None:
    """Its JSON has only its kind's fields: another kind's would be lost in the ledger."""
    with pytest.raises(ValueError, match="speech request"):
        JobRequest("speech", "Hello.", 0, lyrics="La")
    with pytest.raises(ValueError, match="music request"):
        JobRequest("music", "piano", 0, voice="ab" * 32)
