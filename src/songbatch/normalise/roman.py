"""Roman numerals where they are numbers: after a heading word ("Chapter IV", "Kapitel IV"), as
a heading line of their own ("XII."), and after a monarch's or pope's name ("Henry VIII",
"Ludwig XIV."). Anywhere else a capital I is the pronoun, and "MIX" or "CIVIL" a word."""

from __future__ import annotations

import re

from songbatch.normalise.language import Language
from songbatch.normalise.scan import Rule

__all__ = ["roman_value", "rules"]

_ROMAN = r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_VALID = re.compile(_ROMAN)
_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def roman_value(numeral: str) -> int | None:
    """The value of a well-formed numeral ("XIV": 14); None for "IIII", "IC" or ""."""
    if not numeral or not _VALID.fullmatch(numeral):
        return None
    total = 0
    for current, following in zip(numeral, [*numeral[1:], ""], strict=True):
        value = _VALUES[current]
        total += -value if following and _VALUES[following] > value else value
    return total


def rules(language: Language) -> list[Rule]:
    headings = "|".join(map(re.escape, language.heading_words))
    heading = re.compile(rf"\b(?P<word>{headings}) (?P<r>[IVXLCDM]+)\b(?!')", re.IGNORECASE)
    alone = re.compile(r"(?:^|(?<=\n))(?P<r>[IVXLCDM]+)(?P<dot>\.?)(?=\n|$)")
    german = language.code.startswith("de")
    regnal = re.compile(
        r"\b(?P<name>[A-Z][a-z]+) (?P<r>[IVXLC]+)\b" + (r"(?P<dot>\.)?" if german else "")
    )

    def say_heading(match: re.Match[str]) -> str | None:
        value = roman_value(match.group("r").upper())
        if value is None or (match.group("r").islower()):
            return None
        return f"{match.group('word')} {language.numbers.cardinal(value)}"

    def say_alone(match: re.Match[str]) -> str | None:
        value = roman_value(match.group("r"))
        return None if value is None else language.numbers.cardinal(value) + match.group("dot")

    def say_regnal(match: re.Match[str]) -> str | None:
        name, numeral = match.group("name"), match.group("r")
        value = roman_value(numeral)
        if value is None:
            return None
        if name in language.regnal_names:
            # "Charles I." ends a sentence; "Charles I went" is Charles and the pronoun.
            if numeral == "I" and not _followed_by_punctuation(match):
                return None
            return language.regnal(name, value)
        if len(numeral) < 2:
            return None
        # "World War II", "Apollo XI", "Rocky III": a number in a name, said as one.
        return f"{name} {language.numbers.cardinal(value)}" + (match.groupdict().get("dot") or "")

    return [
        Rule("roman-heading", heading, say_heading),
        Rule("roman-alone", alone, say_alone),
        Rule("roman-regnal", regnal, say_regnal),
    ]


def _followed_by_punctuation(match: re.Match[str]) -> bool:
    rest = match.string[match.end() :]
    return not rest or rest[0] in ".,;:!?)\n"
