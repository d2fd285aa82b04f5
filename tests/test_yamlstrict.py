"""The strict YAML loader: YAML 1.2 core values, positions, and one-line errors for surprises."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from songbatch.errors import ManifestError, ProfileError
from songbatch.yamlstrict import decode_utf8, format_path, load_yaml, parse_yaml


def parse(text: str | bytes) -> dict[str, object]:
    return parse_yaml(text.encode() if isinstance(text, str) else text, "t.yaml").data


def error(text: str | bytes) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse(text)
    assert "\n" not in str(info.value)
    return info.value


def test_core_schema_values() -> None:
    data = parse(
        "s: hello\ni: 42\nneg: -7\nf: 2.5\ne: 1e3\nt: true\nF: False\nn: null\ntilde: ~\n"
        "empty:\nhex: 0x1F\noct: 0o17\nzero: 0\ninf: .inf\nq: 'no'\ndq: \"010\"\n"
        "block: |\n  a\n  b\nlist: [1, two]\nmap: {a: 1}\n"
    )
    assert data["s"] == "hello" and data["i"] == 42 and data["neg"] == -7
    assert data["f"] == 2.5 and data["e"] == 1000.0
    assert data["t"] is True and data["F"] is False
    assert data["n"] is None and data["tilde"] is None and data["empty"] is None
    assert data["hex"] == 31 and data["oct"] == 15 and data["zero"] == 0
    assert isinstance(data["inf"], float) and math.isinf(data["inf"])
    assert data["q"] == "no" and data["dq"] == "010"
    assert data["block"] == "a\nb\n"
    assert data["list"] == [1, "two"] and data["map"] == {"a": 1}


def test_plain_words_that_yaml11_would_convert_stay_strings() -> None:
    # YAML 1.1 reads 1_000 as 1000 and ".5e" oddly; the 1.2 core schema keeps them as text.
    data = parse("a: 1_000\nb: 12:00pm\nc: Null island\nd: 3 minutes\n")
    assert data == {"a": "1_000", "b": "12:00pm", "c": "Null island", "d": "3 minutes"}


def test_positions_are_one_based_for_values_and_keys() -> None:
    doc = parse_yaml(b"title: x\nchapters:\n  - title: One\n    text: Hi\n", "t.yaml")
    assert doc.positions[("title",)] == (1, 8)
    assert doc.positions[("chapters", 0)] == (3, 5)
    assert doc.positions[("chapters", 0, "text")] == (4, 11)
    assert doc.key_positions[("chapters", 0, "text")] == (4, 5)
    assert doc.position(("chapters", 0, "missing")) == (3, 5)  # nearest written ancestor


@pytest.mark.parametrize("word", ["yes", "No", "ON", "off", "y", "N"])
def test_yaml11_booleans_are_rejected(word: str) -> None:
    err = error(f"a: 1\nflag: {word}\n")
    assert (err.line, err.col, err.field) == (2, 7, "flag")
    assert "write true or false" in err.message and f'"{word}"' in err.message


@pytest.mark.parametrize("value", ["010", "-007", "00"])
def test_leading_zero_integers_are_rejected(value: str) -> None:
    err = error(f"n: {value}\n")
    assert (err.line, err.col, err.field) == (1, 4, "n")
    assert "leading zero" in err.message


@pytest.mark.parametrize("value", ["1:30", "1:30:00", "-2:05.5"])
def test_sexagesimal_numbers_are_rejected(value: str) -> None:
    err = error(f"list:\n  - {value}\n")
    assert (err.line, err.col, err.field) == (2, 5, "list[0]")
    assert '"1m30s"' in err.message


def test_quoted_forms_are_plain_strings() -> None:
    assert parse("a: 'yes'\nb: \"1:30\"\nc: '010'\n") == {"a": "yes", "b": "1:30", "c": "010"}


def test_duplicate_key_names_first_line() -> None:
    err = error("a:\n  b: 1\n  c: 2\n  b: 3\n")
    assert (err.line, err.col, err.field) == (4, 3, "a.b")
    assert "first written on line 2" in err.message


def test_tab_indentation() -> None:
    err = error("a:\n\tb: 1\n")
    assert (err.line, err.col, err.field) == (2, 1, None)
    assert "indent with spaces" in err.message


@pytest.mark.parametrize(
    ("text", "line", "col", "field", "snippet"),
    [
        ("a: &x 1\n", 1, 4, "a", "anchors"),
        ("a: 1\nb:\n  - *x\n", 3, 5, "b[0]", None),  # undefined alias: still a clean error
        ("<<: {a: 1}\n", 1, 1, None, "merge keys"),
        ("1: one\n", 1, 1, None, "keys must be strings"),
        ("? [a, b]\n: 1\n", 1, 3, None, "keys must be plain names"),
        ("a: !!str 5\n", 1, 4, "a", "tags"),
        ("a: !custom x\n", 1, 4, "a", "tags"),
        ("a: [1, 2\n", 2, 1, None, "invalid YAML"),
        ("a: 1\n---\nb: 2\n", 2, 1, None, "single document"),
        ("- a\n- b\n", 1, 1, None, "not a list"),
        ("just text\n", 1, 1, None, "not a single value"),
        ("", 1, 1, None, "file is empty"),
        ("# only a comment\n", 1, 1, None, "file is empty"),
    ],
)
def test_rejected_structures(
    text: str, line: int, col: int, field: str | None, snippet: str | None
) -> None:
    err = error(text)
    assert (err.line, err.col, err.field) == (line, col, field)
    if snippet:
        assert snippet in err.message


def test_alias_is_rejected() -> None:
    err = error("a: &x 1\n")
    assert "anchors" in err.message
    err = error("b:\n  - *x\n")
    assert (err.line, err.col) == (2, 5)


def test_bom_and_crlf_are_fine() -> None:
    assert parse(b"\xef\xbb\xbfa: 1\r\nb: two\r\n") == {"a": 1, "b": "two"}


def test_invalid_utf8_names_the_line_of_the_first_bad_byte() -> None:
    err = error(b"a: ok\nb: caf\xe9\n")
    assert (err.line, err.col) == (2, 7)
    assert "byte 0xE9 at offset 12" in err.message


def test_invalid_utf8_after_bom_counts_file_offsets() -> None:
    err = error(b"\xef\xbb\xbfa: \xff\n")
    assert (err.line, err.col) == (1, 4)
    assert "offset 6" in err.message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_are_rejected(encoding: str) -> None:
    err = error("a: 1\n".encode(encoding))
    assert "save it as UTF-8" in err.message


def test_control_characters_are_reported_with_position() -> None:
    err = error("a: 1\nb: x\x07y\n")
    assert (err.line, err.col) == (2, 5)


def test_decode_utf8_strips_bom() -> None:
    assert decode_utf8(b"\xef\xbb\xbfhi") == "hi"


def test_format_path() -> None:
    assert format_path(("chapters", 2, "title")) == "chapters[2].title"
    assert format_path(("voice", "params", "rate")) == "voice.params.rate"
    assert format_path(()) == ""


def test_load_yaml_from_file_and_error_class(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nflag: off\n", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_yaml(path, error_cls=ProfileError)
    assert info.value.file == path and info.value.line == 2
    with pytest.raises(ManifestError, match="cannot read"):
        load_yaml(tmp_path / "missing.yaml")
