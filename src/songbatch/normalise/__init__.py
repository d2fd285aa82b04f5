"""What the voice gets: a chapter's text with numbers, dates, money, units, abbreviations and
addresses said in words for its language, and the book's lexicon applied.

The stage runs between the chapter text and the chunks (planner.py): the chunker cuts what
the engine will read, so its length limit holds for the words, not the digits. A job's key is
the text its engine gets, so a change here re-renders exactly the chunks whose words change.
Number words come from num2words; the rules per idea live in their own modules (dates.py,
money.py, ...), the words per language in english.py and german.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from songbatch.normalise import abbreviations, cardinals, dates, money, roman, web
from songbatch.normalise.english import english
from songbatch.normalise.german import german
from songbatch.normalise.language import Language
from songbatch.normalise.lexicon import ESPEAK, NOTATIONS, LexiconEntry, lexicon_rules
from songbatch.normalise.scan import Rule, rewrite, rewrite_mapped
from songbatch.textmap import TextMap

__all__ = [
    "ESPEAK",
    "NOTATIONS",
    "LexiconEntry",
    "Voicing",
    "language_rules",
    "normalised_languages",
    "voicing",
]

# The languages with rules of their own, by primary language subtag.
_LANGUAGES: dict[str, Callable[[str], Language]] = {"en": english, "de": german}


def normalised_languages() -> list[str]:
    return sorted(_LANGUAGES)


@functools.lru_cache(maxsize=32)
def language_rules(tag: str) -> tuple[Rule, ...]:
    """The rules for a language tag ("en-GB"), most specific first: addresses before dates,
    dates before money, money before bare numbers. () for a language without rules."""
    make = _LANGUAGES.get(tag.split("-")[0].lower())
    if make is None:
        return ()
    language = make(tag)
    return (
        *web.rules(language),
        *dates.rules(language),
        *money.rules(language),
        *roman.rules(language),
        *cardinals.rules(language),
        *abbreviations.rules(language),
    )


@dataclass(frozen=True)
class Voicing:
    """One book's way from written to spoken text: its lexicon, then (where `normalise` is on
    and the language has rules) the language's rules, in one pass."""

    rules: tuple[Rule, ...]

    def __call__(self, text: str) -> str:
        return rewrite(text, self.rules) if self.rules else text

    def mapped(self, text: str) -> tuple[str, TextMap]:
        """The spoken text and where its words came from in `text`."""
        return rewrite_mapped(text, self.rules) if self.rules else (text, TextMap())


def voicing(
    language: str,
    *,
    normalise: bool,
    lexicon: Sequence[LexiconEntry] = (),
    notation: str | None = None,
) -> Voicing:
    """`notation`: the phoneme notation the engine reads inline (engines/registry.py), if any."""
    own = lexicon_rules(lexicon, notation)
    return Voicing((*own, *(language_rules(language) if normalise else ())))
