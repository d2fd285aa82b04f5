"""Where a rewritten text came from: a rewrite kept as its edits, so that a span of what it
wrote can be traced back to the span of its source (planner.py: each chunk's written words,
which its subtitles show, though the engine reads the chunk said in words)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

__all__ = ["Edit", "TextMap"]


@dataclass(frozen=True)
class Edit:
    """source[source_start:source_end] was rewritten as target[target_start:target_end]."""

    source_start: int
    source_end: int
    target_start: int
    target_end: int


@dataclass(frozen=True)
class TextMap:
    """A rewrite's edits, in order; the text between two edits is copied unchanged."""

    edits: tuple[Edit, ...] = ()

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The source of target[start:end]. An edit the span's bounds cut goes whole to the
        span holding its first character: "$1,250,000" said over two chunks is one chunk's."""
        return self._opening(start), self._closing(end)

    def _opening(self, at: int) -> int:
        index = bisect_right(self.edits, at, key=_target_start) - 1
        if index < 0:
            return at
        edit = self.edits[index]
        if at == edit.target_start < edit.target_end:
            return edit.source_start
        # Past it, or inside it (the span before has it), or it wrote nothing: what it
        # dropped (spaces the tidying took) belongs to no span.
        return edit.source_end + max(0, at - edit.target_end)

    def _closing(self, at: int) -> int:
        index = bisect_left(self.edits, at, key=_target_start) - 1
        if index < 0:
            return at
        edit = self.edits[index]
        return edit.source_end + max(0, at - edit.target_end)


def _target_start(edit: Edit) -> int:
    return edit.target_start
