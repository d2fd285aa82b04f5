"""`--time-limit` spans: the grammar in songbatch.spans, and the CLI's one-line refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.books import synthetic_profile
from songbatch.cli.main import app
from songbatch.errors import InputError
from songbatch.spans import SpanError, format_span, parse_span

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_BOOK = REPO / "manifests" / "example-book.yaml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("2.5", 2.5),
        ("45s", 45),
        ("45 sec", 45),
        ("90m", 5400),
        ("90min", 5400),
        ("90 minutes", 5400),
        ("1.5h", 5400),
        ("1.5 hr", 5400),
        (".5h", 1800),
        ("1h30m", 5400),
        ("1h 30min", 5400),
        ("2h 15min", 8100),
        ("2H15M", 8100),
        ("1 hour 1 minute 1 second", 3661),
        ("1m30s", 90),
        ("  6h  ", 21600),
    ],
)
def test_spans_people_type(text: str, seconds: float) -> None:
    assert parse_span(text) == seconds


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected a span"),
        ("   ", "expected a span"),
        ("soon", "expected a span"),
        ("m", "expected a span"),
        ("1d", "expected a span"),
        ("1h30", "expected a span"),
        ("1.5.h", "expected a span"),
        ("1e3s", "expected a span"),
        ("1,5h", "expected a span"),
        ("+5m", "expected a span"),
        ("inf", "expected a span"),
        ("nan", "expected a span"),
        ("5 m s", "expected a span"),
        ("\u0663m", "expected a span"),  # an Arabic-Indic three
        ("30m1h", "each unit once"),
        ("1h 1h", "each unit once"),
        ("1m 2min", "each unit once"),
        ("0", "more than zero"),
        ("0m", "more than zero"),
        ("0h 0m 0s", "more than zero"),
        ("-1h", "more than zero"),
        ("-5", "more than zero"),
        ("9" * 400 + "h", "too long"),
    ],
)
def test_garbage_zero_and_negative_are_refused(text: str, why: str) -> None:
    with pytest.raises(SpanError, match=why):
        parse_span(text)


def test_a_span_error_is_an_input_error() -> None:
    assert issubclass(SpanError, InputError) and SpanError("x").exit_code == 2


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (12.4, "12s"), (260, "4m20s"), (3900, "1h05m"), (-3, "0s")]
)
def test_format_span(seconds: float, text: str) -> None:
    assert format_span(seconds) == text


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0", "must be more than zero"),
        ("0m", "must be more than zero"),
        ("-1h", "must be more than zero"),
        ("90 minuets", "expected a span like 90m, 1.5h, 1h30m, 2h 15min or 45s"),
        ("1h 1h", "each unit once"),
    ],
)
def test_bad_time_limit_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, value: str, why: str
) -> None:
    result = invoke(
        "render", str(EXAMPLE_BOOK), "--workspace", str(tmp_path), "--time-limit", value
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"songbatch: error: --time-limit {value!r}: {why}")
    assert not (tmp_path / ".songbatch").exists()


@pytest.mark.parametrize("value", ["1.5h", "90min", "2h 15min"])
def test_time_limits_people_type_are_accepted(tmp_path: Path, value: str) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    book = tmp_path / "book.yaml"
    book.write_text(
        "kind: audiobook\ntitle: Span Book\nauthor: A\nprofile: synthetic.yaml\n"
        "formats: [flac]\nspeak_titles: false\nchapters:\n"
        "  - title: One\n    text: A short sentence.\n",
        encoding="utf-8",
    )
    result = invoke("render", str(book), "--workspace", str(tmp_path), "--time-limit", value)
    assert result.exit_code == 0, result.output
