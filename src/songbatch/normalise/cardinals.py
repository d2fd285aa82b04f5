"""Ordinals (21st; German "3." before a word) and every other number: "1,234.5" or "1.234,5"
as the language groups digits, negative numbers, and four-digit numbers from 1100 to 1999
read as years are ("fifteen hundred"), which is also how a narrator says such a count."""

from __future__ import annotations

import re

from songbatch.normalise.dates import previous_word
from songbatch.normalise.language import Language
from songbatch.normalise.numbers import MINUS_SIGNS
from songbatch.normalise.scan import Rule

__all__ = ["rules"]

_NOT_AFTER = r"(?<![\w.,])"


def rules(language: Language) -> list[Rule]:
    english_ordinal = re.compile(rf"{_NOT_AFTER}(\d+)(?:st|nd|rd|th)\b")
    # "am 3. Mai", "der 2. Weltkrieg", "Ludwig XIV.": a number with a full stop before a word
    # is an ordinal in German. Before a capital it could also end a sentence ("Es waren 3.
    # Dann..."), so there it takes an article or preposition before it.
    german_ordinal = re.compile(rf"{_NOT_AFTER}(\d{{1,3}})\.(?= (?P<next>\w))")
    sign = f"(?:(?<![\\w.,\\d])[{MINUS_SIGNS}](?=\\d))?"
    number = re.compile(rf"{_NOT_AFTER}(?P<n>{sign}{language.numbers.pattern})(?![\w]|[.,]\d)")
    german = language.code.startswith("de")

    def say_english_ordinal(match: re.Match[str]) -> str | None:
        return language.ordinal(int(match.group(1)))

    def say_german_ordinal(match: re.Match[str]) -> str | None:
        before = previous_word(match)
        if match.group("next").isupper() and before.lower() not in _GERMAN_ARTICLES:
            return None
        return language.ordinal(int(match.group(1)), before)

    def say_number(match: re.Match[str]) -> str | None:
        parsed = language.numbers.parse(match.group("n"))
        if parsed is None:
            return None
        if (
            not parsed.negative
            and not parsed.fraction
            and not parsed.leading_zero
            and len(match.group("n")) == 4
            and 1100 <= parsed.whole <= 1999
        ):
            return language.year(parsed.whole)
        return language.numbers.say(parsed)

    ordinal = (
        Rule("ordinal", german_ordinal, say_german_ordinal)
        if german
        else Rule("ordinal", english_ordinal, say_english_ordinal)
    )
    return [ordinal, Rule("number", number, say_number)]


_GERMAN_ARTICLES = frozenset(
    {"der", "die", "das", "den", "dem", "des", "am", "im", "vom", "zum", "zur", "beim"}
    | {"ein", "eine", "einen", "einem", "einer", "jeder", "jede", "jedes", "seit", "bis"}
)
