"""What a source says about itself, held to the manifest's own rules before it is written: a
value the manifest would refuse (a year of 0, a language of "English", an ISBN whose check
digit fails, a GIF cover) is converted where it can be and left out with a note where not, so
an imported manifest always loads."""

from __future__ import annotations

import io
import re
from dataclasses import fields, replace
from typing import Any

from pydantic import TypeAdapter, ValidationError

from songbatch import text as textlib
from songbatch.importing.book import Cover, Metadata
from songbatch.manifest import Isbn, Language, SeriesPart, Year, cover_problem

_CHECKS: dict[str, TypeAdapter[Any]] = {
    "language": TypeAdapter(Language),
    "year": TypeAdapter(Year),
    "series_part": TypeAdapter(SeriesPart),
    "isbn": TypeAdapter(Isbn),
}
# The language names sources write instead of a tag (Project Gutenberg's "Language: English").
_LANGUAGE_NAMES = {
    "english": "en",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "swedish": "sv",
    "danish": "da",
    "norwegian": "no",
    "finnish": "fi",
    "polish": "pl",
    "russian": "ru",
    "greek": "el",
    "latin": "la",
    "chinese": "zh",
    "japanese": "ja",
    "korean": "ko",
}


def checked_metadata(metadata: Metadata) -> tuple[Metadata, list[str]]:
    """`metadata` with every value the manifest would accept, and a note per one left out."""
    notes: list[str] = []
    values: dict[str, Any] = {}
    for item in fields(Metadata):
        value = getattr(metadata, item.name)
        if isinstance(value, str):
            value = " ".join(value.split())
            if not textlib.has_visible_text(value):
                value = None
        if value is not None and item.name == "language":
            value = _LANGUAGE_NAMES.get(value.lower(), value.replace("_", "-"))
        if value is not None and item.name in _CHECKS:
            try:
                value = _CHECKS[item.name].validate_python(value)
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
                notes.append(f"{item.name} {value!r} left out: {reason}")
                value = None
        values[item.name] = value
    if values["series"] is None:
        values["series_part"] = None  # the manifest refuses a place in no series
    return replace(metadata, **values), notes


def year_of(date: str | None) -> int | None:
    """The year a date starts with ("2019-04-01", "2019"); None for anything else."""
    match = re.match(r"\s*(\d{4})\b", date or "")
    return int(match.group(1)) if match else None


def usable_cover(data: bytes) -> tuple[Cover | None, str | None]:
    """A JPEG or PNG the manifest takes, converting other images (GIF, WebP...) to PNG; else
    None and why."""
    problem = cover_problem(data)
    if problem is None:
        return Cover(data, ".jpg" if data.startswith(b"\xff\xd8") else ".png"), None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            out = io.BytesIO()
            image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(out, "PNG")
    except Exception:
        return None, f"cover left out: it {problem}"
    converted = out.getvalue()
    if cover_problem(converted) is not None:
        return None, f"cover left out: it {problem}"
    return Cover(converted, ".png"), None
