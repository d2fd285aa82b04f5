"""Numbers as written in a language (its decimal mark and digit grouping) and as said, with
num2words for the words: cardinals, ordinals, years, decimals digit by digit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from num2words import num2words

__all__ = ["Number", "NumberWords", "number_pattern"]

# num2words raises OverflowError past its largest scale word; such a number is an identifier
# more than a quantity, so it is read digit by digit.
_LARGEST = 10**21
MINUS_SIGNS = "-\u2212"  # hyphen-minus and the minus sign


@dataclass(frozen=True)
class Number:
    """A number as written: its sign, the digits of its whole part (grouping marks removed)
    and the digits after the decimal mark, zeros kept ("4.50": "50")."""

    negative: bool
    whole_digits: str
    fraction: str = ""

    @property
    def whole(self) -> int:
        return int(self.whole_digits)

    @property
    def is_one(self) -> bool:
        return self.whole == 1 and not self.fraction and not self.negative

    @property
    def leading_zero(self) -> bool:
        """ "007" is read digit by digit; "0.5" is not."""
        return len(self.whole_digits) > 1 and self.whole_digits[0] == "0"


def number_pattern(decimal_mark: str, group_mark: str) -> str:
    """A regex (no groups of its own) for an unsigned number written with these marks:
    "1,234.5" in English, "1.234,5" in German. A digit group is exactly three digits, so
    "3.14" is a decimal in English, and "3.141" a grouped thousand only where "." groups."""
    group, mark = re.escape(group_mark), re.escape(decimal_mark)
    return rf"(?:\d{{1,3}}(?:{group}\d{{3}})+|\d+)(?:{mark}\d+)?"


class NumberWords:
    """Number words in one language through num2words (`lang`: its language code)."""

    def __init__(self, lang: str, decimal_mark: str, group_mark: str, point: str) -> None:
        self.lang = lang
        self.decimal_mark = decimal_mark
        self.group_mark = group_mark
        self.point = point
        self.pattern = number_pattern(decimal_mark, group_mark)
        self.minus = self.words(-1).split()[0]

    def parse(self, written: str) -> Number | None:
        negative = written[:1] in MINUS_SIGNS
        digits = written[1:] if negative else written
        whole, _, fraction = digits.partition(self.decimal_mark)
        whole = whole.replace(self.group_mark, "")
        if not whole.isdigit() or (fraction and not fraction.isdigit()):
            return None
        return Number(negative, whole, fraction)

    def words(self, n: int, to: str = "cardinal") -> str:
        # English num2words writes "one thousand, nine hundred": that comma would be a
        # clause break (a pause, and a place the chunker may cut) inside one number.
        return str(num2words(n, lang=self.lang, to=to)).replace(",", "")

    def cardinal(self, n: int) -> str:
        if abs(n) >= _LARGEST:
            said = self.digits(str(abs(n)))
            return f"{self.minus} {said}" if n < 0 else said
        return self.words(n)

    def ordinal(self, n: int) -> str:
        return self.words(n, to="ordinal")

    def year(self, n: int) -> str:
        return self.words(n, to="year")

    def digits(self, digits: str) -> str:
        return " ".join(self.words(int(d)) for d in digits)

    def say(self, number: Number) -> str:
        """A quantity: "minus three point one four", "four point five zero", "zero zero seven"."""
        if number.leading_zero:
            said = self.digits(number.whole_digits)
        else:
            said = self.cardinal(number.whole)
        if number.fraction:
            said = f"{said} {self.point} {self.digits(number.fraction)}"
        return f"{self.minus} {said}" if number.negative else said

    def read(self, written: str) -> str | None:
        number = self.parse(written)
        return None if number is None else self.say(number)
