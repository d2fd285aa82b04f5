"""Everything about the inputs is checked at plan time (issue 9).

Each refusal goes through the CLI, `plan` and `render` both, in a workspace where a good book
and album were rendered first: exit 2, one line naming file:line and the field, no traceback,
and the workspace's state byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from songbatch.cli.main import app
from songbatch.errors import ManifestError
from songbatch.profiles import load_profile
from songbatch.render import load_all
from songbatch.workspace import resolve_workspace

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]

SYNTHETIC = """\
name: synthetic
speech:
  engine: synthetic
  model: tone
  params: {latency_ms: 1}
  max_chars: 200
music:
  engine: synthetic
  model: tone
  params: {latency_ms: 1}
devices: cpu:1
lease_seconds: 30
max_attempts: 2
"""

BOOK = """\
kind: audiobook
title: Checked Book
author: Test Author
profile: synthetic.yaml
formats: [wav]
voice:
  params:
    exaggeration: 0.5
chapters:
  - title: First
    text: One short sentence. Another one here.
  - title: Second
    text: |
      The second chapter speaks.

      It has two paragraphs.
"""

ALBUM = """\
kind: album
title: Checked Album
artist: Test Artist
profile: synthetic.yaml
formats: [wav]
params:
  guidance_scale: 3.0
tracks:
  - title: One
    prompt: a calm piano
    duration: 1
"""

MUSICGEN = """\
name: musicgen
speech: {engine: synthetic, model: tone}
music:
  engine: musicgen
  model: facebook/musicgen-small
  params: {guidance_scale: 3.0}
devices: cpu:1
"""

CHATTERBOX = """\
name: chatterbox
speech:
  engine: chatterbox
  model: ResembleAI/chatterbox
  params: {variant: english}
  max_chars: 300
music: {engine: synthetic, model: tone}
devices: cpu:1
"""


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding a rendered book and album (synthetic engine), ledger and all."""
    base = tmp_path_factory.mktemp("rendered")
    (base / "synthetic.yaml").write_text(SYNTHETIC, encoding="utf-8")
    (base / "book.yaml").write_text(BOOK, encoding="utf-8")
    (base / "album.yaml").write_text(ALBUM, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SONGBATCH_HOME", str(base / "home"))
        result = invoke(
            "render", str(base / "book.yaml"), str(base / "album.yaml"), "-w", str(base)
        )
    assert result.exit_code == 0, result.output
    assert (base / ".songbatch" / "ledger.db").is_file() or any((base / ".songbatch").iterdir())
    return base


@pytest.fixture
def ws(rendered: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(rendered, copy, symlinks=True)
    return copy


def state_of(workspace: Path) -> dict[str, bytes]:
    """Every file under .songbatch with its bytes: what a refused command must not change."""
    state = workspace / ".songbatch"
    return {
        str(p.relative_to(state)): p.read_bytes()
        for p in sorted(state.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def assert_refused(
    ws: Path,
    manifest: str,
    *,
    file: str,
    line_with: str,
    field: str | None,
    snippet: str,
    extra: tuple[str, ...] = (),
) -> None:
    """`plan` and `render` both: exit 2, one line `file:line:col: field: ...`, state intact."""
    before = state_of(ws)
    where = ws / file
    line = line_of(where, line_with)
    options = [str(ws / arg) if arg.endswith(".yaml") else arg for arg in extra]
    for command in ("plan", "render"):
        result = invoke(command, str(ws / manifest), "-w", str(ws), *options)
        output = result.output
        assert result.exit_code == 2, output
        assert "Traceback" not in output
        lines = output.strip().splitlines()
        assert len(lines) == 1, output
        assert lines[0].startswith(f"songbatch: error: {where}:{line}:"), (lines[0], line)
        if field is not None:
            assert f": {field}: " in lines[0], lines[0]
        assert snippet in lines[0], lines[0]
        assert state_of(ws) == before, f"{command} changed the workspace"


@dataclass(frozen=True)
class Case:
    id: str
    file: str  # the file to edit
    old: str
    new: str
    manifest: str  # what to plan and render
    where: str  # the file the error must name
    line_with: str  # text on the line it must name
    field: str | None
    snippet: str
    extra: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None


def _write(name: str, body: str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / name).write_text(body, encoding="utf-8")

    return setup


CASES = [
    # engine params of the manifest, against the chosen engine (synthetic)
    Case(
        "typo-did-you-mean",
        "book.yaml",
        "    exaggeration: 0.5\n",
        "    exagerration: 0.5\n",
        "book.yaml",
        "book.yaml",
        "exagerration",
        "voice.params.exagerration",
        "did you mean 'exaggeration'?",
    ),
    Case(
        "chapter-voice-param-typo",
        "book.yaml",
        "    text: One short sentence. Another one here.\n",
        "    text: One short sentence. Another one here.\n    voice: {params: {pich: 40}}\n",
        "book.yaml",
        "book.yaml",
        "pich",
        "chapters[0].voice.params.pich",
        "did you mean 'pitch'?",
    ),
    Case(
        "own-param-wrong-type",
        "book.yaml",
        "    exaggeration: 0.5\n",
        "    rate: fast\n",
        "book.yaml",
        "book.yaml",
        "rate: fast",
        "voice.params.rate",
        "expected a whole number",
        extra=("--profile", "offline"),
    ),
    Case(
        "own-param-fraction",
        "book.yaml",
        "    exaggeration: 0.5\n",
        "    pitch: 40.5\n",
        "book.yaml",
        "book.yaml",
        "pitch: 40.5",
        "voice.params.pitch",
        "expected a whole number",
        extra=("--profile", "offline"),
    ),
    Case(
        "profile-only-param-in-manifest",
        "book.yaml",
        "    exaggeration: 0.5\n",
        "    latency_ms: 5\n",
        "book.yaml",
        "book.yaml",
        "latency_ms",
        "voice.params.latency_ms",
        "is read once, when the engine loads",
    ),
    Case(
        "other-engine-param-wrong-type",
        "book.yaml",
        "    exaggeration: 0.5\n",
        "    exaggeration: high\n",
        "book.yaml",
        "book.yaml",
        "exaggeration",
        "voice.params.exaggeration",
        "expected a number",
    ),
    Case(
        "other-engine-param-out-of-range",
        "book.yaml",
        "    exaggeration: 0.5\n",
        "    rate: 1000\n",
        "book.yaml",
        "book.yaml",
        "rate",
        "voice.params.rate",
        "less than or equal to 450",
    ),
    Case(
        "track-param-typo",
        "album.yaml",
        "    duration: 1\n",
        "    duration: 1\n    params: {guidance_scal: 2}\n",
        "album.yaml",
        "album.yaml",
        "{guidance_scal:",
        "tracks[0].params.guidance_scal",
        "did you mean 'guidance_scale'?",
    ),
    # engine params of the profile
    Case(
        "profile-param-typo",
        "synthetic.yaml",
        "  params: {latency_ms: 1}\n  max_chars",
        "  params: {latency: 1}\n  max_chars",
        "book.yaml",
        "synthetic.yaml",
        "latency: 1",
        "speech.params.latency",
        "did you mean 'latency_ms'?",
    ),
    Case(
        "profile-param-range",
        "synthetic.yaml",
        "  params: {latency_ms: 1}\n  max_chars",
        "  params: {latency_ms: -5}\n  max_chars",
        "book.yaml",
        "synthetic.yaml",
        "latency_ms: -5",
        "speech.params.latency_ms",
        "greater than or equal to 0 (got -5)",
    ),
    Case(
        "max-chars-below-chunking",
        "synthetic.yaml",
        "  max_chars: 200\n",
        "  max_chars: 5\n",
        "book.yaml",
        "synthetic.yaml",
        "max_chars: 5",
        "speech.max_chars",
        "at least 20",
    ),
    Case(
        "profile-infinite-lease",
        "synthetic.yaml",
        "lease_seconds: 30\n",
        "lease_seconds: .inf\n",
        "book.yaml",
        "synthetic.yaml",
        "lease_seconds",
        "lease_seconds",
        "finite number",
    ),
    # musicgen: the engine's own checks, now before the plan
    Case(
        "musicgen-track-range",
        "album.yaml",
        "    duration: 1\n",
        "    duration: 1\n    params: {top_p: 1.5}\n",
        "album.yaml",
        "album.yaml",
        "top_p",
        "tracks[0].params.top_p",
        "less than or equal to 1",
        extra=("--profile", "musicgen.yaml"),
        setup=_write("musicgen.yaml", MUSICGEN),
    ),
    Case(
        "musicgen-album-type",
        "album.yaml",
        "  guidance_scale: 3.0\n",
        "  guidance_scale: '3'\n",
        "album.yaml",
        "album.yaml",
        "guidance_scale",
        "params.guidance_scale",
        "expected a number",
        extra=("--profile", "musicgen.yaml"),
        setup=_write("musicgen.yaml", MUSICGEN),
    ),
    Case(
        "musicgen-profile-stride",
        "musicgen.yaml",
        "{guidance_scale: 3.0}",
        "{guidance_scale: 3.0, extend_stride: 30}",
        "album.yaml",
        "musicgen.yaml",
        "extend_stride",
        "music.params.extend_stride",
        "less than 30",
        extra=("--profile", "musicgen.yaml"),
        setup=_write("musicgen.yaml", MUSICGEN),
    ),
    Case(
        "music-engine-for-speech",
        "musicgen.yaml",
        "speech: {engine: synthetic, model: tone}",
        "speech: {engine: musicgen, model: facebook/musicgen-small}",
        "album.yaml",
        "musicgen.yaml",
        "speech: {engine: musicgen",
        "speech.engine",
        "'musicgen' renders music only",
        extra=("--profile", "musicgen.yaml"),
        setup=_write("musicgen.yaml", MUSICGEN),
    ),
    # chatterbox, in the profile (checked as it loads, before the engine is looked for)
    Case(
        "chatterbox-profile-typo",
        "chatterbox.yaml",
        "{variant: english}",
        "{variant: english, exagerration: 0.5}",
        "book.yaml",
        "chatterbox.yaml",
        "exagerration",
        "speech.params.exagerration",
        "did you mean 'exaggeration'?",
        extra=("--profile", "chatterbox.yaml"),
        setup=_write("chatterbox.yaml", CHATTERBOX),
    ),
    Case(
        "chatterbox-profile-variant",
        "chatterbox.yaml",
        "{variant: english}",
        "{variant: klingon}",
        "book.yaml",
        "chatterbox.yaml",
        "variant: klingon",
        "speech.params.variant",
        "unknown chatterbox variant 'klingon'",
        extra=("--profile", "chatterbox.yaml"),
        setup=_write("chatterbox.yaml", CHATTERBOX),
    ),
    Case(
        "chatterbox-profile-range",
        "chatterbox.yaml",
        "{variant: english}",
        "{variant: english, temperature: 0}",
        "book.yaml",
        "chatterbox.yaml",
        "temperature: 0",
        "speech.params.temperature",
        "greater than 0",
        extra=("--profile", "chatterbox.yaml"),
        setup=_write("chatterbox.yaml", CHATTERBOX),
    ),
    Case(
        "chatterbox-profile-qa-bounds",
        "chatterbox.yaml",
        "{variant: english}",
        "{variant: english, qa_min_ratio: 3}",
        "book.yaml",
        "chatterbox.yaml",
        "qa_min_ratio",
        "speech.params.qa_min_ratio",
        "above qa_max_ratio",
        extra=("--profile", "chatterbox.yaml"),
        setup=_write("chatterbox.yaml", CHATTERBOX),
    ),
    Case(
        "chatterbox-profile-language",
        "chatterbox.yaml",
        "{variant: english}",
        "{variant: english, language: fr}",
        "book.yaml",
        "chatterbox.yaml",
        "language: fr",
        "speech.params.language",
        "speaks English only",
        extra=("--profile", "chatterbox.yaml"),
        setup=_write("chatterbox.yaml", CHATTERBOX),
    ),
    Case(
        "chatterbox-max-chars-past-the-cap",
        "chatterbox.yaml",
        "  max_chars: 300\n",
        "  max_chars: 900\n",
        "book.yaml",
        "chatterbox.yaml",
        "max_chars: 900",
        "speech.max_chars",
        "Chatterbox stops every call at 40 s",
        extra=("--profile", "chatterbox.yaml"),
        setup=_write("chatterbox.yaml", CHATTERBOX),
    ),
    # languages and voices, offline (espeak-ng)
    Case(
        "offline-language-without-voice",
        "book.yaml",
        "author: Test Author\n",
        "author: Test Author\nlanguage: qq-ZZ\n",
        "book.yaml",
        "book.yaml",
        "language: qq-ZZ",
        "language",
        "espeak-ng has no voice for language 'qq-ZZ'",
        extra=("--profile", "offline"),
    ),
    Case(
        "offline-chapter-language",
        "book.yaml",
        "    text: One short sentence. Another one here.\n",
        "    text: One short sentence. Another one here.\n    voice: {params: {language: qq}}\n",
        "book.yaml",
        "book.yaml",
        "language: qq",
        "chapters[0].voice.params.language",
        "no voice for language 'qq'",
        extra=("--profile", "offline"),
    ),
    Case(
        "offline-unknown-voice",
        "book.yaml",
        "    exaggeration: 0.5\n",
        "    voice: no-such-voice\n",
        "book.yaml",
        "book.yaml",
        "no-such-voice",
        "voice.params.voice",
        "'no-such-voice' not found",
        extra=("--profile", "offline"),
    ),
    Case(
        "offline-pitch-range",
        "book.yaml",
        "    exaggeration: 0.5\n",
        "    pitch: 120\n",
        "book.yaml",
        "book.yaml",
        "pitch: 120",
        "voice.params.pitch",
        "less than or equal to 99 (got 120)",
        extra=("--profile", "offline"),
    ),
    # durations
    Case(
        "track-too-short",
        "album.yaml",
        "    duration: 1\n",
        "    duration: 10ms\n",
        "album.yaml",
        "album.yaml",
        "duration: 10ms",
        "tracks[0].duration",
        "at least 0.1 seconds",
    ),
    Case(
        "profile-duration-param",
        "synthetic.yaml",
        "music:\n  engine: synthetic\n  model: tone\n  params: {latency_ms: 1}",
        "music:\n  engine: offline\n  model: sketch\n  params: {duration_s: 0}",
        "album.yaml",
        "synthetic.yaml",
        "duration_s: 0",
        "music.params.duration_s",
        "greater than or equal to 0.1",
    ),
    # chapters with nothing to say
    Case(
        "zero-width-text",
        "book.yaml",
        "    text: One short sentence. Another one here.\n",
        '    text: "\\u200b\\u2060 \\ufeff\\u00ad\\u202e"\n',
        "book.yaml",
        "book.yaml",
        "- title: First",
        "chapters[0].text",
        "chapter 1 ('First') has no text",
    ),
    Case(
        "nothing-to-speak-titles-off",
        "book.yaml",
        "    text: One short sentence. Another one here.\n",
        "    text: '* * *'\n",
        "book.yaml",
        "book.yaml",
        "- title: First",
        "chapters[0].text",
        "has nothing to speak",
        setup=lambda ws: edit(
            ws / "book.yaml", "formats: [wav]\n", "formats: [wav]\nspeak_titles: false\n"
        ),
    ),
    Case(
        "invisible-text-file",
        "book.yaml",
        "    text: One short sentence. Another one here.\n",
        "    text_file: blank.txt\n",
        "book.yaml",
        "book.yaml",
        "- title: First",
        "chapters[0].text_file",
        "has no text",
        setup=_write("blank.txt", "\u200b\n\u2028\u3000\u200d\n"),
    ),
    # files that are not files
    Case(
        "fifo-text-file",
        "book.yaml",
        "    text: One short sentence. Another one here.\n",
        "    text_file: pipe.txt\n",
        "book.yaml",
        "book.yaml",
        "pipe.txt",
        "chapters[0].text_file",
        "is a named pipe (FIFO)",
        setup=lambda ws: os.mkfifo(ws / "pipe.txt"),
    ),
    Case(
        "device-text-file",
        "book.yaml",
        "    text: One short sentence. Another one here.\n",
        "    text_file: /dev/null\n",
        "book.yaml",
        "book.yaml",
        "/dev/null",
        "chapters[0].text_file",
        "is a device",
    ),
    Case(
        "fifo-voice-reference",
        "book.yaml",
        "  params:\n    exaggeration: 0.5\n",
        "  reference: voice.wav\n",
        "book.yaml",
        "book.yaml",
        "voice.wav",
        "voice.reference",
        "is a named pipe (FIFO)",
        setup=lambda ws: os.mkfifo(ws / "voice.wav"),
    ),
    # hostile YAML
    Case(
        "deep-flow-lists",
        "book.yaml",
        "chapters:\n",
        "extra: " + "[" * 10000 + "\nchapters:\n",
        "book.yaml",
        "book.yaml",
        "extra: [[[",
        "extra",
        "nested more than",
    ),
    Case(
        "deep-flow-mappings",
        "synthetic.yaml",
        "devices: cpu:1\n",
        "devices: " + "{a: " * 10000 + "\n",
        "book.yaml",
        "synthetic.yaml",
        "devices: {a:",
        "devices",
        "nested more than",
    ),
]


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev are POSIX")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_at_plan_time(case: Case, ws: Path) -> None:
    if case.setup is not None:
        case.setup(ws)
    edit(ws / case.file, case.old, case.new)
    assert_refused(
        ws,
        case.manifest,
        file=case.where,
        line_with=case.line_with,
        field=case.field,
        snippet=case.snippet,
        extra=case.extra,
    )


@pytest.fixture
def fake_chatterbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `chatterbox` that `check_engine` finds: proves the checks need no torch or chatterbox
    (planning never imports the engine module)."""
    site = tmp_path / "fake_site"
    (site / "chatterbox").mkdir(parents=True)
    (site / "chatterbox" / "__init__.py").write_text("raise ImportError('not for planning')\n")
    monkeypatch.syspath_prepend(str(site))


@pytest.mark.parametrize(
    ("old", "new", "line_with", "field", "snippet"),
    [
        (
            "author: Test Author\n",
            "author: Test Author\nlanguage: de\n",
            "language: de",
            "language",
            "chatterbox english speaks English only, not 'de'",
        ),
        (
            "    exaggeration: 0.5\n",
            "    exaggeration: 2.5\n",
            "exaggeration: 2.5",
            "voice.params.exaggeration",
            "less than or equal to 2",
        ),
        (
            "    exaggeration: 0.5\n",
            "    qa_max_ratio: 0.1\n",
            "qa_max_ratio",
            "voice.params.qa_max_ratio",
            "above qa_max_ratio",
        ),
        (
            "    exaggeration: 0.5\n",
            "    cfg_wieght: 0.3\n",
            "cfg_wieght",
            "voice.params.cfg_wieght",
            "did you mean 'cfg_weight'?",
        ),
        (
            "    text: One short sentence. Another one here.\n",
            "    text: One short sentence. Another one here.\n"
            "    voice: {params: {variant: multilingual}}\n",
            "variant: multilingual",
            "chapters[0].voice.params.variant",
            "is read once, when the engine loads",
        ),
    ],
)
def test_chatterbox_manifest_params(
    ws: Path, fake_chatterbox: None, old: str, new: str, line_with: str, field: str, snippet: str
) -> None:
    (ws / "chatterbox.yaml").write_text(CHATTERBOX, encoding="utf-8")
    edit(ws / "book.yaml", old, new)
    assert_refused(
        ws,
        "book.yaml",
        file="book.yaml",
        line_with=line_with,
        field=field,
        snippet=snippet,
        extra=("--profile", "chatterbox.yaml"),
    )


def test_multilingual_chatterbox_takes_its_languages(ws: Path, fake_chatterbox: None) -> None:
    profile = CHATTERBOX.replace("{variant: english}", "{variant: multilingual}")
    (ws / "chatterbox.yaml").write_text(profile, encoding="utf-8")
    edit(ws / "book.yaml", "author: Test Author\n", "author: Test Author\nlanguage: pt-BR\n")
    result = invoke(
        "plan", str(ws / "book.yaml"), "-w", str(ws), "--profile", str(ws / "chatterbox.yaml")
    )
    assert result.exit_code == 0, result.output
    edit(ws / "book.yaml", "language: pt-BR", "language: yo")
    assert_refused(
        ws,
        "book.yaml",
        file="book.yaml",
        line_with="language: yo",
        field="language",
        snippet="chatterbox multilingual cannot speak 'yo'",
        extra=("--profile", "chatterbox.yaml"),
    )


# --------------------------------------------------------------------------- Replicate


@pytest.fixture
def replicate_profile(ws: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_not_a_real_token_for_planning_only")
    path = ws / "remote.yaml"
    shutil.copyfile(REPO / "profiles" / "replicate.yaml", path)
    return path


@pytest.mark.parametrize(
    ("manifest", "old", "new", "where", "line_with", "field", "snippet"),
    [
        (
            "book.yaml",
            "    exaggeration: 0.5\n",
            "    temprature: 0.5\n",
            "book.yaml",
            "temprature",
            "voice.params.temprature",
            "did you mean 'temperature'?",
        ),
        (
            "album.yaml",
            "  guidance_scale: 3.0\n",
            "  guidance_scale: loud\n",
            "album.yaml",
            "guidance_scale",
            "params.guidance_scale",
            "expected a number",
        ),
        (
            "remote.yaml",
            "top_k: params.top_k|int",
            "top_k: params.top_k|integer",
            "remote.yaml",
            "params.top_k|integer",
            "replicate.models.musicgen.inputs.top_k",
            "unknown cast",
        ),
        (
            "remote.yaml",
            "prompt: text\n        lyrics: lyrics",
            "prompt: txt\n        lyrics: lyrics",
            "remote.yaml",
            "prompt: txt",
            "replicate.models.music-1.5.inputs.prompt",
            "unknown input source 'txt'",
        ),
    ],
)
def test_replicate_params(
    ws: Path,
    replicate_profile: Path,
    manifest: str,
    old: str,
    new: str,
    where: str,
    line_with: str,
    field: str,
    snippet: str,
) -> None:
    edit(ws / manifest, old, new)
    target = "album.yaml" if "music" in field or manifest == "album.yaml" else "book.yaml"
    assert_refused(
        ws,
        target,
        file=where,
        line_with=line_with,
        field=field,
        snippet=snippet,
        extra=("--profile", "remote.yaml"),
    )


def test_replicate_limits_are_checked_per_chunk_at_plan_time(
    ws: Path, replicate_profile: Path
) -> None:
    # chatterbox-turbo takes at most 500 characters of text; chunks of up to 600 would fail
    # each at render time, after the plan was written.
    edit(replicate_profile, "  model: chatterbox          #", "  model: chatterbox-turbo    #")
    edit(replicate_profile, "  max_chars: 300\n", "  max_chars: 550\n")
    sentence = "word " * 105
    edit(ws / "book.yaml", "It has two paragraphs.", f"It has {sentence.strip()} paragraphs.")
    assert_refused(
        ws,
        "book.yaml",
        file="book.yaml",
        line_with="- title: Second",
        field="chapters[1]",
        snippet="the model takes 1-500",
        extra=("--profile", "remote.yaml"),
    )


def test_replicate_lyrics_past_the_lyrics_models_limit(ws: Path, replicate_profile: Path) -> None:
    # music-2.5, the default lyrics_model, takes 1-3,500 characters of lyrics.
    lyrics = "la " * 1200
    edit(
        ws / "album.yaml",
        "    prompt: a calm piano\n",
        f"    prompt: a calm piano\n    lyrics: {lyrics.strip()}\n",
    )
    assert_refused(
        ws,
        "album.yaml",
        file="album.yaml",
        line_with="- title: One",
        field="tracks[0]",
        snippet="input 'lyrics' has 3599 characters; the model takes 1-3500",
        extra=("--profile", "remote.yaml"),
    )


def test_replicate_short_prompt_for_music_1_5(ws: Path, replicate_profile: Path) -> None:
    edit(replicate_profile, "  lyrics_model: music-2.5 ", "  lyrics_model: music-1.5 ")
    edit(
        ws / "album.yaml",
        "    prompt: a calm piano\n",
        "    prompt: calm\n    lyrics: la la la la la la la\n",
    )
    assert_refused(
        ws,
        "album.yaml",
        file="album.yaml",
        line_with="- title: One",
        field="tracks[0]",
        snippet="input 'prompt' has 4 characters; the model takes 10-300",
        extra=("--profile", "remote.yaml"),
    )


# --------------------------------------------------------------------------- valid inputs


def test_valid_params_keep_their_job_keys(ws: Path) -> None:
    """The checks only check: a book that plans today plans to the same rows (no re-render)."""
    result = invoke("plan", str(ws / "book.yaml"), str(ws / "album.yaml"), "-w", str(ws), "--json")
    assert result.exit_code == 0, result.output
    previews = json.loads(result.output)
    # (A copy of the rendered workspace: the manifests' paths are new, their jobs are not.)
    assert all(p["new"] == 0 and p["reused"] == p["jobs"] > 0 for p in previews), previews


def test_whole_numbers_written_as_floats_still_plan(ws: Path) -> None:
    # The offline engine has always int()-ed rate and pitch: 165.0 must not start failing.
    edit(ws / "book.yaml", "    exaggeration: 0.5\n", "    rate: 165.0\n    pitch: 50\n")
    result = invoke("plan", str(ws / "book.yaml"), "-w", str(ws), "--profile", "offline")
    assert result.exit_code == 0, result.output


def test_param_models_read_what_the_engines_read() -> None:
    from songbatch_synthetic import SyntheticSpeechParams  # the tests' plugin (tests/plugins)

    from songbatch.engines.params import (  # new in issue 9: imported here, so the others run
        ChatterboxParams,
        MusicgenParams,
        OfflineSpeechParams,
        params_problem,
    )

    assert params_problem(SyntheticSpeechParams, {"latency_ms": 5, "fail_marker": "X"}) is None
    assert params_problem(SyntheticSpeechParams, {"disk_full_while": "/tmp/x"}) is None
    assert params_problem(OfflineSpeechParams, {"rate": 165, "pitch": 50, "voice": None}) is None
    assert params_problem(MusicgenParams, {"top_p": 0, "do_sample": False, "dtype": None}) is None
    assert params_problem(ChatterboxParams, {"variant": "Turbo", "top_k": 50}) is None
    problem = params_problem(ChatterboxParams, {"cfg_weight": True})
    assert problem is not None and problem.key == "cfg_weight"
    for name in ("local", "offline", "replicate"):
        load_profile(REPO / "profiles" / f"{name}.yaml")


# --------------------------------------------------------------------------- pauses and titles


def _silences(audio: np.ndarray, rate: int, at_least_s: float) -> list[float]:
    """Lengths in seconds of the runs of digital silence at least `at_least_s` long."""
    mono = np.abs(audio if audio.ndim == 1 else audio.max(axis=1))
    quiet = np.concatenate([[False], mono < 1e-4, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    runs = (edges[1::2] - edges[::2]) / rate
    return [float(r) for r in runs if r >= at_least_s]


def _render_one_chapter(ws: Path, pauses: str) -> tuple[np.ndarray, int]:
    book = ws / "pauses.yaml"
    book.write_text(
        "kind: audiobook\ntitle: Pauses\nauthor: A\nprofile: synthetic.yaml\nformats: [wav]\n"
        f"speak_titles: false\n{pauses}chapters:\n"
        "  - title: Only\n    text: The first one. The second one. The third one.\n",
        encoding="utf-8",
    )
    result = invoke("render", str(book), "-w", str(ws))
    assert result.exit_code == 0, result.output
    (out,) = (ws / "outputs" / "pauses").glob("*.wav")
    audio, rate = soundfile.read(out, dtype="float32")
    return audio, rate


def test_sentence_pause_is_silence_between_sentences_of_one_chunk(ws: Path) -> None:
    audio, rate = _render_one_chapter(ws, "pauses: {sentence: 1.5, paragraph: 0.2, chapter: 0.1}\n")
    inner = [s for s in _silences(audio, rate, 1.0) if s < 1.6]
    assert len(inner) == 2 and all(abs(s - 1.5) < 0.02 for s in inner), inner


def _chunk_texts(ws: Path, manifest: Path) -> list[str]:
    (item,) = load_all([manifest], None, resolve_workspace(ws))
    by_key = {job.key: job.request.text for job in item.plan.jobs}
    return [by_key[row.key] for row in item.plan.rows]


def test_a_text_that_opens_with_its_title_is_not_titled_twice(ws: Path) -> None:
    book = ws / "titled.yaml"
    book.write_text(
        "kind: audiobook\ntitle: Titled\nauthor: A\nprofile: synthetic.yaml\nformats: [wav]\n"
        "chapters:\n"
        "  - title: Chapter One\n    text: |\n      CHAPTER ONE.\n\n      It was a dark night.\n"
        "  - title: The Storm\n    text: The Storm raged all night.\n",
        encoding="utf-8",
    )
    texts = _chunk_texts(ws, book)
    assert texts == [
        "CHAPTER ONE.",
        "It was a dark night.",
        "The Storm",
        "The Storm raged all night.",
    ]


def test_plan_manifest_raises_what_the_cli_prints(ws: Path) -> None:
    edit(ws / "book.yaml", "    exaggeration: 0.5\n", "    exagerration: 0.5\n")
    with pytest.raises(ManifestError, match="did you mean 'exaggeration'"):
        load_all([ws / "book.yaml"], None, resolve_workspace(ws))


def test_declarations_import_without_torch_or_chatterbox() -> None:
    """check_engine and the planner run before any worker: the params models must not pull in
    the heavy libraries (here made unimportable)."""
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'chatterbox'):\n"
        "    sys.modules[name] = None\n"
        "import songbatch.engines.params, songbatch.plancheck, songbatch.planner\n"
        "from songbatch.engines import params_model\n"
        "assert params_model('chatterbox', 'speech').__name__ == 'ChatterboxParams'\n"
        "assert params_model('musicgen', 'music').__name__ == 'MusicgenParams'\n"
        "assert params_model('musicgen', 'speech') is None\n"
        # a plugin's declaration (tests/plugins, on PYTHONPATH) is light too
        "assert params_model('synthetic', 'speech').__name__ == 'SyntheticSpeechParams'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
