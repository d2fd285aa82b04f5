"""IPA -> espeak-ng's phoneme mnemonics, for a lexicon's `ipa:` entries: espeak-ng reads no
IPA input, only its own ASCII names inside `[[ ]]`, so IPA is converted by a table per
language's espeak phoneme table. English (en, en-GB, en-US, ...: one espeak table) is here.

The table maps each IPA symbol or sequence to an espeak name; the longest match wins (`aɪə`
before `aɪ` before `a`). Stress marks (ˈ ˌ) become ' and ,; length (ː) belongs to its vowel
(`iː` is i:, `i` is i); tie bars (t͡ʃ), syllable dots and slashes around the whole are
dropped; ASCII ' and : are taken for ˈ and ː. Checked by round trip against espeak-ng
itself (tests/test_normalise_ipa.py): espeak's own IPA for a word, converted here, gives the
mnemonics it speaks the word with, or ones that sound the same (en-GB's `3` and `@` are both
ə). What IPA cannot tell apart is given one espeak phoneme: ɑː is `A:` (palm; espeak's `A@`,
start, sounds the same), ə is `@`, ɔː is `O:` (thought; north's `O@` differs slightly), a is
`a` (trap and bath). American r-coloured vowels are a vowel and r (ɪɹ is I r).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["IpaError", "ipa_languages", "to_espeak"]

# IPA -> espeak-ng's English phoneme names (espeak-ng's phsource/ph_english and
# docs/phonemes; what `espeak-ng -x` prints).
ENGLISH: dict[str, str] = {
    # Consonants.
    "p": "p",
    "b": "b",
    "t": "t",
    "d": "d",
    "k": "k",
    "g": "g",
    "ɡ": "g",
    "f": "f",
    "v": "v",
    "θ": "T",
    "ð": "D",
    "s": "s",
    "z": "z",
    "ʃ": "S",
    "ʒ": "Z",
    "h": "h",
    "x": "x",  # loch
    "m": "m",
    "n": "n",
    "ŋ": "N",
    "l": "l",
    "ɫ": "l",
    "r": "r",
    "ɹ": "r",
    "j": "j",
    "w": "w",
    "ʍ": "w",  # which: espeak's English says it as w
    "tʃ": "tS",
    "dʒ": "dZ",
    "ɾ": "t#",  # American English's flap (water)
    "ʔ": "?",
    "n̩": "n-",  # syllabic n (button)
    "l̩": "@L",  # syllabic l (bottle)
    # Vowels.
    "ɪ": "I",
    "i": "i",  # happy
    "iː": "i:",
    "ɛ": "E",
    "e": "E",
    "æ": "a",
    "a": "a",
    "ɐ": "a#",  # about
    "ɑ": "A:",
    "ɑː": "A:",
    "ɒ": "0",
    "ɔ": "O:",
    "ɔː": "O:",
    "ʊ": "U",
    "u": "u:",
    "uː": "u:",
    "ʌ": "V",
    "ə": "@",
    "ɚ": "3",
    "ɜ": "3:",
    "ɜː": "3:",
    "ɝ": "3:",
    "ɝː": "3:",
    # Diphthongs and triphthongs.
    "eɪ": "eI",
    "aɪ": "aI",
    "ɔɪ": "OI",
    "aʊ": "aU",
    "əʊ": "oU",
    "oʊ": "oU",
    "ɪə": "i@3",
    "iə": "i@3",
    "eə": "e@",
    "ɛə": "e@",
    "ɛː": "e@",
    "ʊə": "U@",
    "aɪə": "aI@",
    "aʊə": "aU3",
    # Stress.
    "ˈ": "'",
    "ˌ": ",",
}

_TABLES = {"en": ENGLISH}
_NAMES = {"en": "English"}
_DROPPED = re.compile("[\u0361\u035c.‿]")  # tie bars, syllable breaks, linking
_ASCII = str.maketrans({"'": "ˈ", ":": "ː"})


class IpaError(ValueError):
    """IPA the table cannot convert; the message names the symbol."""


def ipa_languages() -> list[str]:
    return sorted(_TABLES)


def to_espeak(ipa: str, language: str) -> str:
    """`ipa` ("ˈhɜːmaɪəni", "/ðə ˈkæt/") in espeak-ng's mnemonics for `language`'s phoneme
    table ("'h3:maI@ni"); words stay apart. IpaError when the language has no table or a
    symbol is not in it."""
    primary = language.split("-")[0].lower()
    table = _TABLES.get(primary)
    if table is None:
        raise IpaError(
            f"no IPA table for language {language!r} (songbatch converts IPA for"
            f" {', '.join(ipa_languages())}); write espeak-ng's phonemes in `espeak:` instead"
        )
    text = _DROPPED.sub("", ipa.strip().strip("/[]").translate(_ASCII))
    longest = max(len(key) for key in table)
    out = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            out.append(" ")
            i += 1
            continue
        for size in range(min(longest, len(text) - i), 0, -1):
            name = table.get(text[i : i + size])
            if name is not None:
                out.append(name)
                i += size
                break
        else:
            raise IpaError(_unknown(text, i, primary))
    return " ".join("".join(out).split())


def _unknown(text: str, i: int, language: str) -> str:
    """The message for the symbol at `i`, taken with its marks ("ɪː", "n̩")."""
    start = i - 1 if i > 0 and _is_mark(text[i]) else i
    end = i + 1
    while end < len(text) and _is_mark(text[end]):
        end += 1
    symbol = text[start:end]
    codes = " ".join(f"U+{ord(ch):04X}" for ch in symbol)
    return (
        f"IPA symbol {symbol!r} ({codes}) is not in the {_NAMES[language]} IPA table (see"
        " docs/manifest.md, Lexicon); write espeak-ng's phonemes in `espeak:` for it"
    )


def _is_mark(ch: str) -> bool:
    return ch == "ː" or unicodedata.category(ch) == "Mn"
