"""Abbreviations said in full ("Dr." Doctor, "e.g." for example, "z. B." zum Beispiel), so that
no engine pauses at their full stop as at a sentence's. A full stop that also ends the sentence
("...and so on, etc. Then") is kept; "St." and "Dr." are Street and Drive after a street's name."""

from __future__ import annotations

import re

from songbatch.normalise.language import Language
from songbatch.normalise.scan import Rule

__all__ = ["rules"]

_FOLLOWING = re.compile(r"[ \"'“‘«(\[]*(\S?)")


def rules(language: Language) -> list[Rule]:
    table = {abbreviation.written: abbreviation for abbreviation in language.abbreviations}
    written = "|".join(sorted(map(re.escape, table), key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.])(?:{written})(?=[\s,;:)!?\"'”’]|$)")

    def say(match: re.Match[str]) -> str | None:
        abbreviation = table[match.group(0)]
        following = _FOLLOWING.match(match.string, match.end())
        next_char = following.group(1) if following else ""
        if abbreviation.before_number and not next_char.isdigit():
            return None
        closes = not next_char or next_char.isupper() or _paragraph_ends(match)
        if abbreviation.after_name is not None and not next_char.isupper():
            # "Baker St." or "Mulholland Dr. was": no name follows, so no title either.
            return _with_stop(abbreviation.after_name, closes)
        if abbreviation.ends_sentences:
            return _with_stop(abbreviation.said, closes)
        return abbreviation.said

    rules = [Rule("abbreviation", pattern, say)]
    if language.code.startswith("de"):
        # German writes street names as one word: "Goethestr. 5" is Goethestraße.
        street = re.compile(r"(?<=[^\W\d_])str\.(?=[\s,;)]|$)")
        rules.append(Rule("abbreviation-street", street, lambda match: _street(match)))
    return rules


def _street(match: re.Match[str]) -> str:
    return "straße." if _paragraph_ends(match) else "straße"


def _paragraph_ends(match: re.Match[str]) -> bool:
    rest = match.string[match.end() :].lstrip(" ")
    return not rest or rest[0] == "\n"


def _with_stop(said: str, closes: bool) -> str:
    return f"{said}." if closes else said
