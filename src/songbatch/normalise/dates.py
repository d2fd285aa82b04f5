"""Dates (2024-03-15, 15/03/2024 or 03/15/2024 as the language writes them, 15.03.2024,
"March 15, 2024", "15 March", "15. März"), times (3:30 pm, 14:05, "14.05 Uhr"), years ("in
1984", "1066 AD") and decades ("the 1990s", "the '60s", "1990er")."""

from __future__ import annotations

import datetime
import re

from songbatch.normalise.language import Language
from songbatch.normalise.scan import Rule

__all__ = ["rules"]

_NOT_AFTER = r"(?<![\w.,:/-])"
_NOT_BEFORE = r"(?![\w]|[.,:/-]\d)"
_PREVIOUS_WORD = re.compile(r"([^\W\d_]+)\.?\s*$")


def _valid(year: int, month: int, day: int) -> bool:
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def previous_word(match: re.Match[str]) -> str:
    """The word just before the match ("am" in "am 3. Mai"), or ""."""
    before = match.string[max(0, match.start() - 40) : match.start()]
    found = _PREVIOUS_WORD.search(before)
    return found.group(1) if found else ""


def _month_names(language: Language) -> str:
    names = [*language.months, *(a.capitalize() for a in language.month_abbreviations)]
    return "|".join(sorted(map(re.escape, names), key=len, reverse=True))


def _month_number(language: Language, written: str) -> int:
    written = written.rstrip(".")
    if written in language.months:
        return language.months.index(written) + 1
    return language.month_abbreviations[written.lower()]


def rules(language: Language) -> list[Rule]:
    months = _month_names(language)
    iso = re.compile(rf"{_NOT_AFTER}(\d{{4}})-(\d{{2}})-(\d{{2}}){_NOT_BEFORE}")
    numeric = re.compile(rf"{_NOT_AFTER}(\d{{1,2}})([/.])(\d{{1,2}})\2(\d{{4}}){_NOT_BEFORE}")
    month_day = re.compile(
        rf"\b({months})\.? (\d{{1,2}})(?:st|nd|rd|th)?\b(?:,? (\d{{4}})\b)?(?!:\d)"
    )
    ordinal_mark = r"\." if language.code.startswith("de") else r"(?:st|nd|rd|th)?"
    day_month = re.compile(
        rf"{_NOT_AFTER}(\d{{1,2}}){ordinal_mark} (?:of )?({months})\b\.?(?:,? (\d{{4}})\b)?"
    )

    def say(match: re.Match[str], year: int | None, month: int, day: int, spelled: str) -> str:
        if not _valid(year or 2000, month, day):
            return ""
        return language.date(day, month, year, previous_word(match), spelled=spelled)

    def from_iso(match: re.Match[str]) -> str | None:
        year, month, day = (int(g) for g in match.groups())
        return say(match, year, month, day, "numeric") or None

    def from_numeric(match: re.Match[str]) -> str | None:
        first, _, second, year = match.groups()
        if match.group(2) == "." and not language.code.startswith("de"):
            return None
        a, b = int(first), int(second)
        day, month = (b, a) if language.numeric_date_order == "MDY" else (a, b)
        if not _valid(int(year), month, day):
            day, month = month, day  # 15/03 in an American book: the writer's order wins
        return say(match, int(year), month, day, "numeric") or None

    def from_month_day(match: re.Match[str]) -> str | None:
        year = int(match.group(3)) if match.group(3) else None
        month = _month_number(language, match.group(1))
        return say(match, year, month, int(match.group(2)), "MD") or None

    def from_day_month(match: re.Match[str]) -> str | None:
        year = int(match.group(3)) if match.group(3) else None
        month = _month_number(language, match.group(2))
        return say(match, year, month, int(match.group(1)), "DM") or None

    return [
        Rule("date-iso", iso, from_iso),
        Rule("date-numeric", numeric, from_numeric),
        Rule("date-month-day", month_day, from_month_day),
        Rule("date-day-month", day_month, from_day_month),
        *_time_rules(language),
        *_year_rules(language),
    ]


def _time_rules(language: Language) -> list[Rule]:
    meridiem = r"(?:\s?(?P<m>[AaPp])\.?[Mm]\.?(?![\w]))"
    clock = re.compile(
        rf"{_NOT_AFTER}(?P<h>\d{{1,2}}):(?P<min>\d{{2}})(?::\d{{2}})?{meridiem}?(?![\w]|[:]\d)"
    )
    hour_meridiem = re.compile(rf"{_NOT_AFTER}(?P<h>\d{{1,2}}){meridiem}")
    german_clock = re.compile(rf"{_NOT_AFTER}(?P<h>\d{{1,2}})(?:[.:](?P<min>\d{{2}}))? Uhr\b")

    def say(match: re.Match[str]) -> str | None:
        groups = match.groupdict()
        hours, minutes = int(groups["h"]), int(groups.get("min") or 0)
        half = groups.get("m")
        limit = 12 if half else 23
        if not (hours <= limit and minutes <= 59) or (half and hours == 0):
            return None
        said = language.time(hours, minutes, f"{half.lower()}m" if half else None)
        # A meridiem's own full stop ("at 5 p.m.") may close the sentence: keep one.
        if half and match.group(0).endswith(".") and _ends_sentence(match):
            said += "."
        return said

    rules = [Rule("time", clock, say), Rule("time-meridiem", hour_meridiem, say)]
    if language.code.startswith("de"):
        rules.insert(0, Rule("time-uhr", german_clock, say))
    return rules


def _ends_sentence(match: re.Match[str]) -> bool:
    rest = match.string[match.end() :]
    stripped = rest.lstrip(" ")
    return not stripped or stripped[0] == "\n" or (rest[:1] == " " and stripped[0].isupper())


def _year_rules(language: Language) -> list[Rule]:
    cues = "|".join(re.escape(cue) for cue in language.year_cues)
    suffixes = "|".join(re.escape(s) for s in language.year_suffixes)
    # Python's look-behinds are fixed-width, so the cue is part of the match and said again.
    units = "|".join(sorted(map(re.escape, language.units), key=len, reverse=True))
    # "in 1500 km" is a distance, and "by 2024-03-15" a date: left to their own rules.
    not_quantity = rf"(?![\w]|[-.,/:]\d| ?(?:%|°|(?:{units})(?![\w])))"
    cued = re.compile(rf"\b(?P<cue>(?i:{cues})) (\d{{4}}){not_quantity}")
    suffixed = re.compile(rf"{_NOT_AFTER}(\d{{3,4}}) (?=(?:{suffixes})(?!\w))")
    decade = re.compile(rf"{_NOT_AFTER}(\d{{3}}0)(?:s|'s|er)\b")
    short_decade = re.compile(r"(?<![\w])['’]?([1-9]0)s\b")

    def year(match: re.Match[str]) -> str | None:
        n = int(match.group(match.lastindex or 1))
        cue = match.groupdict().get("cue")
        said = language.year(n)
        return f"{cue} {said}" if cue else f"{said} "

    def say_decade(match: re.Match[str]) -> str | None:
        written = match.group(0)
        english = written.endswith("s")
        if english == language.code.startswith("de"):
            return None
        return language.decade(int(match.group(1)))

    def say_short_decade(match: re.Match[str]) -> str | None:
        if language.code.startswith("de"):
            return None
        said = language.numbers.cardinal(int(match.group(1)))
        return said[:-1] + "ies" if said.endswith("y") else said + "s"

    return [
        Rule("year-cued", cued, year),
        Rule("year-era", suffixed, year),
        Rule("decade", decade, say_decade),
        Rule("decade-short", short_decade, say_short_decade),
    ]
