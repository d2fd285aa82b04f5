"""Per-format encoding settings from the manifest (`encoding: {mp3: {...}}`), over what the
mastering preset or the format would use, read back from the files with mutagen."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from mutagen.mp3 import MP3, BitrateMode
from mutagen.oggopus import OggOpus
from typer.testing import Result

from helpers.examples import BOOK_DIR, example_book, render_offline
from helpers.specs import bare_spec
from songbatch.assemble import stream_key
from songbatch.assemblyspec import AssemblySpec
from songbatch.presets import spec_encoding


def render_book(workspace: Path, formats: str, extra: str, code: int = 0) -> Result:
    """The example book in `formats`, `extra` (whole lines) after them, rendered to `code`."""
    book = example_book(workspace, formats=formats, extra=f"\n{extra}")
    return render_offline(workspace, book, code)


def files(workspace: Path, suffix: str) -> list[Path]:
    return sorted((workspace / "outputs" / BOOK_DIR).glob(f"*{suffix}"))


def test_mp3_settings_replace_the_formats_own(tmp_path: Path) -> None:
    extra = "encoding:\n  mp3: {bitrate: 96, sample_rate: 44100, channels: 2}\n"
    render_book(tmp_path, "[mp3]", extra)
    for path in files(tmp_path, ".mp3"):
        info = MP3(path).info
        assert (info.bitrate, info.sample_rate, info.channels) == (96_000, 44_100, 2)
        assert info.bitrate_mode is BitrateMode.CBR


def test_vbr_mp3_and_an_opus_rate(tmp_path: Path) -> None:
    extra = "encoding:\n  mp3: {bitrate: 190, mode: vbr}\n  opus: {bitrate: 32, mode: cbr}\n"
    render_book(tmp_path, "[mp3, opus]", extra)
    for path in files(tmp_path, ".mp3"):
        assert MP3(path).info.bitrate_mode is BitrateMode.VBR
    for path in files(tmp_path, ".opus"):
        kbps = path.stat().st_size * 8 / OggOpus(path).info.length / 1000
        assert 28 <= kbps <= 40, kbps  # 32 kbit/s and the Ogg pages around it


def test_settings_go_over_a_presets_and_its_check_still_holds(tmp_path: Path) -> None:
    """ACX takes 192 kbit/s or more: a book at 256 passes; the rate stays the preset's."""
    extra = "master: acx\nencoding:\n  mp3: {bitrate: 256}\n"
    result = render_book(tmp_path, "[mp3]", extra)
    assert "against acx" in result.output
    for path in files(tmp_path, ".mp3"):
        info = MP3(path).info
        assert (info.bitrate, info.sample_rate, info.channels) == (256_000, 44_100, 1)


@pytest.mark.parametrize(
    ("formats", "extra", "field", "why"),
    [
        ("[mp3]", "encoding:\n  flac: {sample_rate: 44100}\n", "encoding.flac", "not in formats"),
        ("[flac]", "encoding:\n  flac: {bitrate: 96}\n", "encoding.flac.bitrate", "lossless"),
        ("[m4b]", "encoding:\n  m4b: {mode: vbr}\n", "encoding.m4b.mode", "mp3 and opus"),
        (
            "[opus]",
            "encoding:\n  opus: {sample_rate: 44100}\n",
            "encoding.opus.sample_rate",
            "opus takes",
        ),
        ("[mp3]", "encoding:\n  mp3: {sample_rate: 12345}\n", "sample_rate", "must be one of"),
        ("[mp3]", "encoding:\n  mp3: {bitrate: 400}\n", "encoding.mp3.bitrate", "320"),
        ("[mp3]", "encoding:\n  mp3: {loud: true}\n", "loud", ""),
        (
            "[mp3]",
            "encoding:\n  mp3: {mode: abr}\n",
            "encoding.mp3.mode",
            "encoding.mp3.mode: Input should be 'cbr' or 'vbr' (got a string: 'abr')",
        ),
    ],
)
def test_settings_an_encoder_cannot_take_are_one_line_errors(
    tmp_path: Path, formats: str, extra: str, field: str, why: str
) -> None:
    result = render_book(tmp_path, formats, extra, code=2)
    [line] = result.output.strip().splitlines()
    assert re.search(r"example-book\.yaml:\d+(:\d+)?: ", line) and field in line, line
    assert why in line
    assert not (tmp_path / ".songbatch").exists()


@pytest.mark.parametrize(
    ("fmt", "encoding", "key"),
    [
        ("m4b", None, "90161eba9184819f1c0eef7211b85219ae1dba8282b98e1b70c6c16ffbcf3a08"),
        ("mp3-book", "acx", "5fb35d09bf6c1a4fd5792709241fd7ed8fcc0d89030d009bf9623e2cfc593271"),
        (
            "mp3-book",
            {"bitrate": 190, "mode": "vbr"},
            "0103767ca0393231191f90032bdcb3ea297e0186c4ae2556e3ac7ffa801719a1",
        ),
    ],
)
def test_an_encodings_part_of_a_key_is_what_it_was_before_bitrate_modes(
    fmt: str, encoding: str | dict[str, object] | None, key: str
) -> None:
    """Streams and outputs made before the bit-rate mode was one field keep their keys (the
    digests were taken from the code of then): a change of model re-encodes nothing."""
    spec = dataclasses.replace(bare_spec(), formats=(fmt,))
    if isinstance(encoding, str):
        spec = dataclasses.replace(spec, master=encoding)
    if isinstance(encoding, dict):
        spec = AssemblySpec.from_dict({**spec.to_dict(), "encoding": {fmt: encoding}})
    assert stream_key("a" * 64, fmt, spec_encoding(spec, fmt)) == key
