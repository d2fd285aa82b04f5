"""A book's pronunciation lexicon: words, phrases or patterns said another way in every chapter.

An entry says the word as a respelling (`say`, which every engine reads) and, for engines that
take phonemes inline, in their notation (`espeak`: espeak-ng's phoneme mnemonics, passed as
`[[...]]`; a manifest's `ipa:` arrives here already converted to them, by normalise/ipa.py).
A word entry matches whole words only. Its case: a key written in lower case matches any case
("tolkien" finds "Tolkien" and "TOLKIEN"); a key with a capital matches as written and in
capitals only ("Bass" the name, not "bass" the fish). A pattern entry is a regular expression
whose `say` and `espeak` may use its groups (\\1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from songbatch.normalise.scan import Rule

__all__ = ["ESPEAK", "LexiconEntry", "check_pattern", "lexicon_rules"]

# The phoneme notations an engine may declare (`EngineEntry.phonemes`, engines/registry.py):
# espeak-ng's `[[ ]]` mnemonics, in its own ASCII alphabet (not IPA: espeak-ng reads no IPA
# input).
ESPEAK = "espeak"
NOTATIONS = (ESPEAK,)


@dataclass(frozen=True)
class LexiconEntry:
    written: str  # the word or phrase, or a regular expression when `pattern`
    say: str | None = None
    espeak: str | None = None
    pattern: bool = False

    def spoken(self, notation: str | None) -> str | None:
        """What replaces the word for an engine taking `notation`; None leaves it as written."""
        if notation == ESPEAK and self.espeak:
            return f"[[{self.espeak}]]"
        return self.say


def check_pattern(pattern: str) -> str | None:
    """Why `pattern` cannot be a lexicon pattern, or None when it can."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return f"not a regular expression: {exc}"
    if compiled.fullmatch(""):
        return "the pattern matches empty text; it must match at least one character"
    return None


def lexicon_rules(entries: Iterable[LexiconEntry], notation: str | None) -> list[Rule]:
    """Rules for `rewrite`: one for every word entry together, one per pattern entry, and for
    espeak-ng one that keeps a book's own "[[" from being read as phonemes."""
    entries = list(entries)
    words = [entry for entry in entries if not entry.pattern]
    rules = [_pattern_rule(entry, notation) for entry in entries if entry.pattern]
    if words:
        rules.insert(0, _word_rule(words, notation))
    if notation == ESPEAK:
        rules.append(Rule("literal-brackets", re.compile(r"\[\[+|\]\]+"), lambda m: m.group()[0]))
    return rules


def _word_rule(entries: list[LexiconEntry], notation: str | None) -> Rule:
    by_folded: dict[str, list[LexiconEntry]] = {}
    for entry in entries:
        by_folded.setdefault(entry.written.casefold(), []).append(entry)
    alternatives = sorted({re.escape(entry.written) for entry in entries}, key=len, reverse=True)
    pattern = re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)", re.IGNORECASE)

    def say(match: re.Match[str]) -> str | None:
        found = match.group()
        for entry in by_folded.get(found.casefold(), []):
            if _case_matches(entry.written, found):
                return entry.spoken(notation)
        return None

    return Rule("lexicon", pattern, say)


def _case_matches(key: str, found: str) -> bool:
    if key == key.lower():
        return True
    return found in (key, key.upper())


def _pattern_rule(entry: LexiconEntry, notation: str | None) -> Rule:
    compiled = re.compile(entry.written)

    def say(match: re.Match[str]) -> str | None:
        spoken = entry.spoken(notation)
        return None if spoken is None else match.expand(spoken)

    return Rule(f"lexicon:{entry.written}", compiled, say)
