"""Money ($4.50, €3, £1.2m, 3,50 €, 5 USD), percentages (50%, 3.5 %) and units (5 km, 10 kg,
20°C, 5 mph), the number said as the language counts the noun after it."""

from __future__ import annotations

import re

from songbatch.normalise.language import Currency, Language
from songbatch.normalise.numbers import MINUS_SIGNS, Number
from songbatch.normalise.scan import Rule

__all__ = ["rules"]

_NOT_AFTER = r"(?<![\w.,])"


def _alternatives(words: object) -> str:
    return "|".join(sorted(map(re.escape, words), key=len, reverse=True))  # type: ignore[call-overload]


def rules(language: Language) -> list[Rule]:
    number = language.numbers.pattern
    sign = f"[{MINUS_SIGNS}]"
    symbols = _alternatives(k for k in language.currencies if not k.isalpha())
    codes = _alternatives(k for k in language.currencies if k.isalpha())
    scales = _alternatives(language.scales)
    scale = rf"(?:\s?(?P<scale>{scales})(?![\w]))?"
    before = re.compile(
        rf"{_NOT_AFTER}(?P<sign>{sign})?(?P<cur>{symbols})\s?(?P<n>{number}){scale}(?![\w])"
    )
    after = re.compile(
        rf"{_NOT_AFTER}(?P<sign>{sign})?(?P<n>{number}){scale}\s?(?P<cur>{symbols}|(?:{codes})\b)"
    )
    code_first = re.compile(rf"\b(?P<cur>{codes}) (?P<sign>{sign})?(?P<n>{number}){scale}(?![\w])")

    def money(match: re.Match[str]) -> str | None:
        amount = language.numbers.parse(match.group("n"))
        if amount is None:
            return None
        if match.group("sign"):
            amount = Number(True, amount.whole_digits, amount.fraction)
        currency: Currency = language.currencies[match.group("cur")]
        written_scale = match.group("scale")
        scale = language.scales[written_scale] if written_scale else None
        return language.money(currency, amount, scale)

    return [
        Rule("money-symbol-first", before, money),
        Rule("money-code-first", code_first, money),
        Rule("money-after", after, money),
        *_percent_and_unit_rules(language, number, sign),
    ]


def _percent_and_unit_rules(language: Language, number: str, sign: str) -> list[Rule]:
    quantity = rf"{_NOT_AFTER}(?P<n>(?:{sign}(?=\d))?{number})"
    percent = re.compile(rf"{quantity}\s?%")
    temperature = re.compile(
        rf"{quantity}\s?°\s?(?P<scale>{_alternatives(language.temperature_scales)})?(?![\w])"
    )
    # "5m" is as often five million as five metres: a bare "m" needs its space ("5 m").
    attached = _alternatives(u for u in language.units if u != "m")
    unit = re.compile(rf"{quantity}(?:\s?(?P<u>{attached})| (?P<spaced>m))(?![\w/])")

    def say_percent(match: re.Match[str]) -> str | None:
        said = language.numbers.read(match.group("n"))
        return None if said is None else f"{said} {language.percent}"

    def say_temperature(match: re.Match[str]) -> str | None:
        amount = language.numbers.parse(match.group("n"))
        if amount is None:
            return None
        degrees = language.degree[0] if amount.is_one else language.degree[1]
        said = f"{language.count(amount)} {degrees}"
        written = match.group("scale")
        return f"{said} {language.temperature_scales[written]}" if written else said

    def say_unit(match: re.Match[str]) -> str | None:
        amount = language.numbers.parse(match.group("n"))
        if amount is None:
            return None
        singular, plural = language.units[match.group("u") or match.group("spaced")]
        return f"{language.count(amount)} {singular if amount.is_one else plural}"

    return [
        Rule("percent", percent, say_percent),
        Rule("temperature", temperature, say_temperature),
        Rule("unit", unit, say_unit),
    ]
