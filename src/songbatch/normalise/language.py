"""What a language brings to normalisation: its words and its ways of saying dates, times,
money and ordinals. One subclass per language (english.py, german.py); the rules (dates.py,
money.py, ...) are written once against this class."""

from __future__ import annotations

from dataclasses import dataclass, field

from songbatch.normalise.numbers import Number, NumberWords

__all__ = ["Abbreviation", "Currency", "Language", "WebWords"]


@dataclass(frozen=True)
class Currency:
    singular: str
    plural: str
    cent_singular: str
    cent_plural: str


@dataclass(frozen=True)
class Abbreviation:
    """`written` (as in the text, its full stops included) read as `said`.

    `ends_sentences`: a word that often closes a sentence ("etc.", "p.m."): before a capital
    letter, or at the end of a paragraph, its full stop is kept as the sentence's. Others
    ("Dr.", "e.g.") never end one; their full stop goes. `before_number`: only an
    abbreviation when a number follows ("No. 5", "Jan. 3"), else a word ("no.")."""

    written: str
    said: str
    ends_sentences: bool = False
    before_number: bool = False
    # Said instead after a capitalised word when no capitalised word follows: "Baker St."
    # is Baker Street where "St. Paul" is Saint Paul; "Mulholland Dr." is Mulholland Drive.
    after_name: str | None = None


@dataclass(frozen=True)
class WebWords:
    dot: str
    at: str
    slash: str
    dash: str
    underscore: str
    plus: str
    colon: str


@dataclass
class Language:
    code: str
    numbers: NumberWords
    months: tuple[str, ...]
    # Lower-cased, without a full stop: "sept" -> 9.
    month_abbreviations: dict[str, int]
    numeric_date_order: str  # "MDY" or "DMY": which of 03/04/2024's numbers is the month
    currencies: dict[str, Currency]  # by symbol and by ISO code
    scales: dict[str, str]  # "m" -> "million": "£1.2m"
    percent: str
    units: dict[str, tuple[str, str]]  # "km" -> ("kilometer", "kilometers")
    degree: tuple[str, str]
    temperature_scales: dict[str, str]  # "C" -> "Celsius"
    heading_words: tuple[str, ...]  # "Chapter": a Roman numeral after one is a number
    regnal_names: frozenset[str]  # "Henry": "Henry VIII" is "Henry the Eighth"
    abbreviations: tuple[Abbreviation, ...]
    web: WebWords
    # Words after which a four-digit number is a year: "in 1984", "since 1990".
    year_cues: tuple[str, ...]
    year_suffixes: tuple[str, ...]  # "1066 AD"
    extra: dict[str, str] = field(default_factory=dict)

    def count(self, number: Number) -> str:
        """A number that counts the noun after it ("5 km", "$1")."""
        return self.numbers.say(number)

    def ordinal(self, n: int, before: str = "") -> str:
        """The ordinal `n`; `before` is the word before it, for languages that inflect."""
        return self.numbers.ordinal(n)

    def year(self, n: int) -> str:
        return self.numbers.year(n)

    def date(self, day: int, month: int, year: int | None, before: str, *, spelled: str) -> str:
        """A date; `spelled` is how it was written ("MD": "March 15", "DM": "15 March",
        "numeric"), since English says those two differently."""
        raise NotImplementedError

    def time(self, hours: int, minutes: int, meridiem: str | None) -> str:
        raise NotImplementedError

    def money(self, currency: Currency, amount: Number, scale: str | None) -> str:
        raise NotImplementedError

    def regnal(self, name: str, n: int) -> str:
        raise NotImplementedError

    def decade(self, year: int) -> str:
        raise NotImplementedError
