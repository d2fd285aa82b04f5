"""English: American by default (the manifest's `en`), British spelling and dates for the
regions that write them (`en-GB`, `en-AU`, ...)."""

from __future__ import annotations

from songbatch.normalise.language import Abbreviation, Currency, Language, WebWords
from songbatch.normalise.numbers import Number, NumberWords

__all__ = ["english"]

BRITISH_REGIONS = frozenset({"GB", "UK", "AU", "NZ", "IE", "ZA", "IN"})

MONTHS = (
    *("January", "February", "March", "April", "May", "June", "July"),
    *("August", "September", "October", "November", "December"),
)
MONTH_ABBREVIATIONS = {
    **{name[:3].lower(): i for i, name in enumerate(MONTHS, 1) if name != "May"},
    "sept": 9,
}

CURRENCIES = {
    "$": Currency("dollar", "dollars", "cent", "cents"),
    "USD": Currency("US dollar", "US dollars", "cent", "cents"),
    "€": Currency("euro", "euros", "cent", "cents"),
    "EUR": Currency("euro", "euros", "cent", "cents"),
    "£": Currency("pound", "pounds", "penny", "pence"),
    "GBP": Currency("pound", "pounds", "penny", "pence"),
    "¥": Currency("yen", "yen", "sen", "sen"),
    "JPY": Currency("yen", "yen", "sen", "sen"),
}
SCALES = {
    **{"k": "thousand", "m": "million", "bn": "billion", "b": "billion", "tn": "trillion"},
    **{"thousand": "thousand", "million": "million", "billion": "billion"},
    "trillion": "trillion",
}

_METRIC = {
    **{"km": "kilometer", "cm": "centimeter", "mm": "millimeter", "m": "meter"},
    **{"l": "liter", "L": "liter", "ml": "milliliter", "mL": "milliliter"},
}
_OTHER_UNITS = {
    **{"kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams")},
    **{"lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces")},
    **{"mi": ("mile", "miles"), "ft": ("foot", "feet"), "yd": ("yard", "yards")},
    **{"mph": ("mile per hour", "miles per hour"), "ms": ("millisecond", "milliseconds")},
    **{"kW": ("kilowatt", "kilowatts"), "kWh": ("kilowatt hour", "kilowatt hours")},
    **{"KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes")},
    **{"MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes")},
    **{
        "TB": ("terabyte", "terabytes"),
        "Hz": ("hertz", "hertz"),
        "kHz": ("kilohertz", "kilohertz"),
    },
    **{"MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz")},
    **{"min": ("minute", "minutes"), "mins": ("minute", "minutes"), "hr": ("hour", "hours")},
    **{"hrs": ("hour", "hours"), "sec": ("second", "seconds"), "secs": ("second", "seconds")},
}

ABBREVIATIONS = (
    Abbreviation("Mr.", "Mister"),
    Abbreviation("Mrs.", "Missus"),
    Abbreviation("Ms.", "Miz"),
    Abbreviation("Dr.", "Doctor", after_name="Drive"),
    Abbreviation("St.", "Saint", after_name="Street"),
    Abbreviation("Prof.", "Professor"),
    Abbreviation("Mt.", "Mount"),
    Abbreviation("Capt.", "Captain"),
    Abbreviation("Lt.", "Lieutenant"),
    Abbreviation("Sgt.", "Sergeant"),
    Abbreviation("Col.", "Colonel"),
    Abbreviation("Gen.", "General"),
    Abbreviation("Rev.", "Reverend"),
    Abbreviation("Jr.", "Junior", ends_sentences=True),
    Abbreviation("Sr.", "Senior", ends_sentences=True),
    Abbreviation("Ave.", "Avenue", ends_sentences=True),
    Abbreviation("Rd.", "Road", ends_sentences=True),
    Abbreviation("e.g.", "for example"),
    Abbreviation("i.e.", "that is"),
    Abbreviation("cf.", "compare"),
    Abbreviation("vs.", "versus"),
    Abbreviation("approx.", "approximately"),
    Abbreviation("etc.", "et cetera", ends_sentences=True),
    Abbreviation("a.m.", "AM", ends_sentences=True),
    Abbreviation("p.m.", "PM", ends_sentences=True),
    Abbreviation("No.", "number", before_number=True),
    Abbreviation("no.", "number", before_number=True),
    Abbreviation("Nos.", "numbers", before_number=True),
    Abbreviation("Fig.", "figure", before_number=True),
    Abbreviation("fig.", "figure", before_number=True),
    Abbreviation("Vol.", "volume", before_number=True),
    Abbreviation("vol.", "volume", before_number=True),
    Abbreviation("pp.", "pages", before_number=True),
    Abbreviation("p.", "page", before_number=True),
)

REGNAL_NAMES = frozenset(
    {
        *("Henry", "Edward", "George", "William", "Elizabeth", "Mary", "Charles", "James"),
        *("Richard", "John", "Anne", "Victoria", "Louis", "Philip", "Peter", "Catherine"),
        *("Frederick", "Ferdinand", "Napoleon", "Alexander", "Nicholas", "Ivan", "Pius"),
        *("Leo", "Gregory", "Benedict", "Innocent", "Clement", "Urban", "Paul", "Otto"),
        *("Wilhelm", "Francis", "Stephen", "David", "Robert", "Malcolm", "Harold", "Ramesses"),
        *("Amenhotep", "Thutmose", "Rameses", "Constantine", "Justinian", "Isabella", "Juan"),
    }
)


class English(Language):
    def __init__(self, code: str, british: bool) -> None:
        self.british = british
        super().__init__(
            code=code,
            numbers=NumberWords("en", ".", ",", "point"),
            months=MONTHS,
            month_abbreviations=MONTH_ABBREVIATIONS,
            numeric_date_order="DMY" if british else "MDY",
            currencies=CURRENCIES,
            scales=SCALES,
            percent="percent",
            units=_units(british),
            degree=("degree", "degrees"),
            temperature_scales={"C": "Celsius", "F": "Fahrenheit"},
            heading_words=(
                *("chapter", "book", "part", "volume", "act", "scene", "section"),
                *("canto", "psalm", "appendix", "letter", "stave"),
            ),
            regnal_names=REGNAL_NAMES,
            abbreviations=ABBREVIATIONS,
            web=WebWords("dot", "at", "slash", "dash", "underscore", "plus", "colon"),
            year_cues=(
                *("in", "since", "by", "from", "until", "till", "to", "of", "circa", "c."),
                *("around", "before", "after", "during", "year", "early", "late", "mid"),
                *("spring", "summer", "autumn", "fall", "winter", "born", "died", "AD"),
            ),
            year_suffixes=("AD", "BC", "BCE", "CE", "A.D.", "B.C."),
        )

    def year(self, n: int) -> str:
        said = self.numbers.year(n)
        # num2words says "two thousand and five"; American English drops the "and".
        return said if self.british else said.replace(" and ", " ")

    def date(self, day: int, month: int, year: int | None, before: str, *, spelled: str) -> str:
        ordinal, name = self.ordinal(day), self.months[month - 1]
        if spelled == "MD":
            said = f"{name} the {ordinal}" if self.british else f"{name} {ordinal}"
        elif spelled == "DM" or self.british:
            said = f"{ordinal} of {name}" if before.lower() == "the" else f"the {ordinal} of {name}"
        else:
            said = f"{name} {ordinal}"
        return f"{said}, {self.year(year)}" if year is not None else said

    def time(self, hours: int, minutes: int, meridiem: str | None) -> str:
        hour = self.numbers.cardinal(hours)
        if meridiem is not None:
            suffix = meridiem.upper()
            return (
                f"{hour} {suffix}" if minutes == 0 else f"{hour} {self._minutes(minutes)} {suffix}"
            )
        if minutes == 0:
            return f"{hour} o'clock" if hours <= 12 else f"{hour} hundred"
        return f"{hour} {self._minutes(minutes)}"

    def _minutes(self, minutes: int) -> str:
        said = self.numbers.cardinal(minutes)
        return f"oh {said}" if minutes < 10 else said

    def money(self, currency: Currency, amount: Number, scale: str | None) -> str:
        sign = f"{self.numbers.minus} " if amount.negative else ""
        if scale is not None or len(amount.fraction) > 2:
            said = self.numbers.say(Number(False, amount.whole_digits, amount.fraction))
            return f"{sign}{said} {scale or ''} {currency.plural}".replace("  ", " ")
        cents = int(amount.fraction.ljust(2, "0")) if amount.fraction else 0
        parts = []
        if amount.whole or not cents:
            unit = currency.singular if amount.whole == 1 else currency.plural
            parts.append(f"{self.numbers.cardinal(amount.whole)} {unit}")
        if cents:
            unit = currency.cent_singular if cents == 1 else currency.cent_plural
            parts.append(f"{self.numbers.cardinal(cents)} {unit}")
        return sign + " ".join(parts)

    def regnal(self, name: str, n: int) -> str:
        return f"{name} the {self.ordinal(n).capitalize()}"

    def decade(self, year: int) -> str:
        said = self.year(year)
        last = said.rsplit(" ", 1)[-1].rsplit("-", 1)[-1]
        plural = last[:-1] + "ies" if last.endswith("y") else last + "s"
        return said[: len(said) - len(last)] + plural


def _units(british: bool) -> dict[str, tuple[str, str]]:
    units = dict(_OTHER_UNITS)
    for abbreviation, word in _METRIC.items():
        spelled = word[:-2] + "re" if british else word
        units[abbreviation] = (spelled, spelled + "s")
    for abbreviation in ("km/h", "kph"):
        units[abbreviation] = (f"{units['km'][0]} per hour", f"{units['km'][1]} per hour")
    units["m/s"] = (f"{units['m'][0]} per second", f"{units['m'][1]} per second")
    return units


def english(tag: str) -> English:
    region = tag.split("-")[-1].upper() if "-" in tag else ""
    return English(tag, british=region in BRITISH_REGIONS)
