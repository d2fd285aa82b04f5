"""Spans of time as a person types them: `90m`, `1.5h`, `1h30m`, `2h 15min`, `45s`; and the
local times of day `--until` takes (`06:30`, `23:15:30`).

The grammar, case-insensitive, spaces allowed between the parts:

    span   := number                      a bare number is seconds (`90`)
            | term (term)*                at most one term per unit, hours before minutes
    term   := number unit                 before seconds (`1h30m`, `2h 15min`, `1m 30s`)
    number := digits [ "." digits ] | "." digits
    unit   := h | hr | hrs | hour | hours
            | m | min | mins | minute | minutes
            | s | sec | secs | second | seconds

The total must be more than zero. Anything else (a sign, an exponent, a unit twice, units out of
order, a day) is refused, so a typo never becomes a limit nobody meant.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from datetime import time as dt_time

from songbatch.errors import InputError

_UNITS: dict[str, tuple[int, float]] = {}  # spelling -> (order, seconds per unit)
for _order, (_seconds, _spellings) in enumerate(
    [
        (3600.0, ("h", "hr", "hrs", "hour", "hours")),
        (60.0, ("m", "min", "mins", "minute", "minutes")),
        (1.0, ("s", "sec", "secs", "second", "seconds")),
    ]
):
    for _spelling in _spellings:
        _UNITS[_spelling] = (_order, _seconds)

_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
# ASCII only: `\d` would take other scripts' digits, which nobody types for a time limit.
_TERM = re.compile(rf"\s*({_NUMBER})\s*([a-z]+)\s*", re.ASCII)
_BARE = re.compile(rf"\s*({_NUMBER})\s*", re.ASCII)

EXAMPLES = "90m, 1.5h, 1h30m, 2h 15min or 45s"


class SpanError(InputError):
    """A span that is not in the grammar, or not more than zero."""


def parse_span(text: str) -> float:
    """Seconds in `text` (see the module's grammar); raises SpanError."""
    lowered = text.lower()
    bare = _BARE.fullmatch(lowered)
    seconds = float(bare.group(1)) if bare else _sum_terms(lowered)
    if not math.isfinite(seconds):
        raise SpanError("too long")
    if seconds <= 0:
        raise SpanError("must be more than zero")
    return seconds


def _sum_terms(text: str) -> float:
    if text.lstrip().startswith("-"):
        raise SpanError("must be more than zero")
    total, last_order, position = 0.0, -1, 0
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None or match.group(2) not in _UNITS:
            raise SpanError(f"expected a span like {EXAMPLES}")
        order, unit_seconds = _UNITS[match.group(2)]
        if order <= last_order:
            raise SpanError(f"each unit once, hours before minutes before seconds ({EXAMPLES})")
        total += float(match.group(1)) * unit_seconds
        last_order, position = order, match.end()
    if last_order < 0:
        raise SpanError(f"expected a span like {EXAMPLES}")
    return total


def format_span(seconds: float) -> str:
    """`1h05m`, `4m20s`, `12s`: short enough for a progress line; whole seconds."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


# --- `--until`: a local time of day, its next occurrence ------------------------------------

_CLOCK = re.compile(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", re.ASCII)
UNTIL_EXAMPLES = "06:30 or 23:15:30 (24-hour local time)"


def parse_clock(text: str) -> tuple[int, int, int]:
    """(hour, minute, second) of `HH:MM` or `HH:MM:SS`, 24-hour; raises SpanError."""
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise SpanError(f"expected a time like {UNTIL_EXAMPLES}")
    hour, minute, second = (int(part) if part else 0 for part in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        raise SpanError(f"no such time of day; expected {UNTIL_EXAMPLES}")
    return hour, minute, second


def next_occurrence(text: str, now: datetime) -> datetime:
    """The first moment after `now` (aware) whose local wall clock reads `text`: later today,
    else tomorrow. A time a DST change skips resolves as the system's `mktime` does."""
    hour, minute, second = parse_clock(text)
    local = now.astimezone()
    day = local.date()
    for _ in range(3):  # today, tomorrow; a third day only if DST ate tomorrow's as well
        target = datetime.combine(day, dt_time(hour, minute, second)).astimezone()
        if target > local:
            return target
        day += timedelta(days=1)
    raise SpanError(f"{text}: no such local time in the next days")
