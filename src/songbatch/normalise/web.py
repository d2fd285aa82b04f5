"""Web addresses and e-mail addresses, read as a narrator would: "example dot com", "name at
example dot org"; a scheme and "www." are left unsaid, a path is read slash by slash."""

from __future__ import annotations

import re

from songbatch.normalise.language import Language
from songbatch.normalise.scan import Rule

__all__ = ["rules"]

# Without a scheme or "www.", only these endings make "word.word" an address: "end.The" and
# "3.14" must stay prose.
_TOP_LEVEL = (
    *("com", "org", "net", "edu", "gov", "io", "co", "uk", "de", "fr", "es", "it", "nl"),
    *("eu", "info", "biz", "us", "ca", "au", "ch", "at", "be", "dev", "app", "ai", "me"),
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})+"
# A path ends before closing punctuation: "(see example.com/a)." keeps its ")." as prose.
_PATH = r"(?:/[^\s]*[^\s.,;:!?)\]\"'”’])?/?"
_URL = re.compile(
    rf"(?<![\w@.-])(?:(?P<scheme>https?://)(?P<host1>{_HOST})"
    rf"|(?P<host2>(?:www\.)?{_LABEL}(?:\.{_LABEL})*\.(?:{'|'.join(_TOP_LEVEL)})))"
    rf"(?P<path>{_PATH})(?![\w@-])",
    re.IGNORECASE,
)
_EMAIL = re.compile(
    rf"(?<![\w.+-])(?P<user>[A-Za-z0-9][A-Za-z0-9._%+-]*)@(?P<host>{_HOST})(?![\w-])"
)


def rules(language: Language) -> list[Rule]:
    words = language.web

    def spell(text: str) -> str:
        spoken = {
            ".": f" {words.dot} ",
            "/": f" {words.slash} ",
            "-": f" {words.dash} ",
            "_": f" {words.underscore} ",
            "+": f" {words.plus} ",
            "@": f" {words.at} ",
        }
        said = "".join(spoken.get(ch, ch) for ch in text)
        return " ".join(said.split())

    def url(match: re.Match[str]) -> str:
        host = match.group("host1") or match.group("host2")
        if host.lower().startswith("www."):
            host = host[4:]
        path = match.group("path").rstrip("/")
        return spell(host + path)

    def email(match: re.Match[str]) -> str:
        return f"{spell(match.group('user'))} {words.at} {spell(match.group('host'))}"

    return [Rule("email", _EMAIL, email), Rule("url", _URL, url)]
