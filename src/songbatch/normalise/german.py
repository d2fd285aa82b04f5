"""German: "1.234,5", dates as "15.03.2024" and "15. März", ordinals written "3." and inflected
after the article or preposition before them ("am dritten", "der dritte")."""

from __future__ import annotations

from songbatch.normalise.language import Abbreviation, Currency, Language, WebWords
from songbatch.normalise.numbers import Number, NumberWords

__all__ = ["german"]

MONTHS = (
    *("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli"),
    *("August", "September", "Oktober", "November", "Dezember"),
)
MONTH_ABBREVIATIONS = {
    **{"jan": 1, "feb": 2, "mär": 3, "märz": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8},
    **{"sep": 9, "sept": 9, "okt": 10, "nov": 11, "dez": 12},
}
CURRENCIES = {
    "€": Currency("Euro", "Euro", "Cent", "Cent"),
    "EUR": Currency("Euro", "Euro", "Cent", "Cent"),
    "$": Currency("Dollar", "Dollar", "Cent", "Cent"),
    "USD": Currency("US-Dollar", "US-Dollar", "Cent", "Cent"),
    "£": Currency("Pfund", "Pfund", "Penny", "Pence"),
    "GBP": Currency("Pfund", "Pfund", "Penny", "Pence"),
    "CHF": Currency("Franken", "Franken", "Rappen", "Rappen"),
    "¥": Currency("Yen", "Yen", "Sen", "Sen"),
}
SCALES = {
    **{"Tsd.": "Tausend", "Mio.": "Millionen", "Mrd.": "Milliarden", "Tausend": "Tausend"},
    **{"Million": "Millionen", "Millionen": "Millionen", "Milliarden": "Milliarden"},
}
UNITS = {
    **{"km": ("Kilometer", "Kilometer"), "m": ("Meter", "Meter"), "cm": ("Zentimeter",) * 2},
    **{"mm": ("Millimeter",) * 2, "kg": ("Kilogramm",) * 2, "g": ("Gramm",) * 2},
    **{"mg": ("Milligramm",) * 2, "l": ("Liter",) * 2, "ml": ("Milliliter",) * 2},
    **{"km/h": ("Kilometer pro Stunde",) * 2, "m/s": ("Meter pro Sekunde",) * 2},
    **{"kW": ("Kilowatt",) * 2, "kWh": ("Kilowattstunde", "Kilowattstunden")},
    **{"GB": ("Gigabyte",) * 2, "MB": ("Megabyte",) * 2, "Std.": ("Stunde", "Stunden")},
    **{"Min.": ("Minute", "Minuten"), "Sek.": ("Sekunde", "Sekunden"), "t": ("Tonne", "Tonnen")},
}
ABBREVIATIONS = (
    Abbreviation("z. B.", "zum Beispiel"),
    Abbreviation("z.B.", "zum Beispiel"),
    Abbreviation("d. h.", "das heißt"),
    Abbreviation("d.h.", "das heißt"),
    Abbreviation("u. a.", "unter anderem"),
    Abbreviation("u.a.", "unter anderem"),
    Abbreviation("usw.", "und so weiter", ends_sentences=True),
    Abbreviation("etc.", "et cetera", ends_sentences=True),
    Abbreviation("bzw.", "beziehungsweise"),
    Abbreviation("ca.", "circa"),
    Abbreviation("vgl.", "vergleiche"),
    Abbreviation("evtl.", "eventuell"),
    Abbreviation("ggf.", "gegebenenfalls"),
    Abbreviation("inkl.", "inklusive"),
    Abbreviation("Dr.", "Doktor"),
    Abbreviation("Prof.", "Professor"),
    Abbreviation("Hr.", "Herr"),
    Abbreviation("Hrn.", "Herrn"),
    Abbreviation("Fr.", "Frau"),
    Abbreviation("St.", "Sankt"),
    Abbreviation("Str.", "Straße", ends_sentences=True),
    Abbreviation("Nr.", "Nummer", before_number=True),
    Abbreviation("S.", "Seite", before_number=True),
    Abbreviation("Abb.", "Abbildung", before_number=True),
)
REGNAL_NAMES = frozenset(
    {
        *("Heinrich", "Ludwig", "Karl", "Friedrich", "Wilhelm", "Otto", "Konrad", "Maximilian"),
        *("Franz", "Joseph", "Leopold", "Elisabeth", "Maria", "Johannes", "Paul", "Pius"),
        *("Benedikt", "Gregor", "Leo", "Innozenz", "Klemens", "Rudolf", "Albrecht", "Georg"),
        *("Eduard", "Richard", "Peter", "Katharina", "Philipp", "Ferdinand", "Napoleon"),
    }
)
# Before these the ordinal takes -n: "am dritten", "zum ersten"; after der/die/das: -e.
_WEAK_N = frozenset({"am", "im", "vom", "zum", "beim", "dem", "den", "des", "seit", "bis"})
_WEAK_E = frozenset({"der", "die", "das"})


class German(Language):
    def __init__(self, code: str) -> None:
        super().__init__(
            code=code,
            numbers=NumberWords("de", ",", ".", "Komma"),
            months=MONTHS,
            month_abbreviations=MONTH_ABBREVIATIONS,
            numeric_date_order="DMY",
            currencies=CURRENCIES,
            scales=SCALES,
            percent="Prozent",
            units=UNITS,
            degree=("Grad", "Grad"),
            temperature_scales={"C": "Celsius", "F": "Fahrenheit"},
            heading_words=("kapitel", "teil", "band", "buch", "akt", "szene", "abschnitt"),
            regnal_names=REGNAL_NAMES,
            abbreviations=ABBREVIATIONS,
            web=WebWords("Punkt", "ät", "Schrägstrich", "Bindestrich", "Unterstrich", "plus", ""),
            year_cues=(
                *("im", "Jahr", "Jahre", "Jahres", "seit", "bis", "von", "ab", "um"),
                *("vor", "nach", "Anno", "anno", "Sommer", "Winter", "Frühjahr", "Herbst"),
            ),
            year_suffixes=("n. Chr.", "v. Chr."),
        )

    def count(self, number: Number) -> str:
        # "1 km" is "ein Kilometer", not "eins Kilometer".
        return "ein" if number.is_one else self.numbers.say(number)

    def ordinal(self, n: int, before: str = "") -> str:
        said = self.numbers.ordinal(n)
        word = before.lower()
        if word in _WEAK_N:
            return said + "n"
        if word in _WEAK_E:
            return said
        return said + "r"

    def date(self, day: int, month: int, year: int | None, before: str, *, spelled: str) -> str:
        said = f"{self.ordinal(day, before)} {self.months[month - 1]}"
        return f"{said} {self.year(year)}" if year is not None else said

    def time(self, hours: int, minutes: int, meridiem: str | None) -> str:
        hour = "ein" if hours == 1 else self.numbers.cardinal(hours)
        if minutes == 0:
            return f"{hour} Uhr"
        return f"{hour} Uhr {self.numbers.cardinal(minutes)}"

    def money(self, currency: Currency, amount: Number, scale: str | None) -> str:
        sign = f"{self.numbers.minus} " if amount.negative else ""
        if scale is not None or len(amount.fraction) > 2:
            said = self.numbers.say(Number(False, amount.whole_digits, amount.fraction))
            return f"{sign}{said} {scale or ''} {currency.plural}".replace("  ", " ")
        cents = int(amount.fraction.ljust(2, "0")) if amount.fraction else 0
        whole = Number(False, amount.whole_digits)
        if not amount.whole and cents:
            return f"{sign}{self.numbers.cardinal(cents)} {currency.cent_plural}"
        said = f"{self.count(whole)} {currency.singular if whole.is_one else currency.plural}"
        # "3,50 €" is "drei Euro fünfzig": the cents follow without their name.
        return sign + (f"{said} {self.numbers.cardinal(cents)}" if cents else said)

    def regnal(self, name: str, n: int) -> str:
        return f"{name} der {self.numbers.ordinal(n).capitalize()}"

    def decade(self, year: int) -> str:
        return f"{self.year(year)}er"


def german(tag: str) -> German:
    return German(tag)
