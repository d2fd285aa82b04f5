"""A source as a run of blocks (paragraphs and headings) cut into sections where chapters
start: at headings, or at paragraphs a pattern matches. Shared by EPUB and Markdown."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from songbatch.importing.book import Chapter
from songbatch.importing.cleanup import chapter_text
from songbatch.importing.matter import matter_of_title

BEFORE_FIRST = "before the first chapter"  # the matter of what precedes the first heading


@dataclass(frozen=True)
class Block:
    text: str  # one paragraph or heading, on one line
    level: int = 0  # 1-6 for a heading, 0 for body text
    matter: str | None = None  # set when the source marks the block as front or back matter


@dataclass
class Section:
    title: str | None
    blocks: list[Block] = field(default_factory=list)
    matter: str | None = None  # the source's own word for it, else found from the title

    def text(self) -> str:
        """The words to read: in a section of the book's own text, without the blocks marked
        as matter (a copyright line at a chapter's end); in a matter section, all of them."""
        whole = self.marked_matter() is not None
        return chapter_text(block.text for block in self.blocks if whole or block.matter is None)

    def marked_matter(self) -> str | None:
        """The matter this section is: said by its source, by its blocks (most of its words
        marked so), or by its title."""
        if self.matter is not None:
            return self.matter
        marked: dict[str, int] = {}
        total = 0
        for block in self.blocks:
            total += len(block.text)
            if block.matter is not None:
                marked[block.matter] = marked.get(block.matter, 0) + len(block.text)
        if marked and max(marked.values()) * 2 > total:
            return max(marked, key=lambda matter: marked[matter])
        return None if self.title is None else matter_of_title(self.title)


def split_at_headings(blocks: Sequence[Block]) -> list[Section] | None:
    """Sections at the top heading level that gives more than one (a book's single `#` title
    above its `##` chapters splits at `##`), each titled by its heading; None when no level
    does. Deeper headings stay in the text; a shallower one starts a section too (a part),
    and before the first chapter is front matter (the book's title and what follows it)."""
    for level in range(1, 7):
        if sum(1 for block in blocks if block.level == level) > 1:
            sections = _split(blocks, partial(_heading_title, deepest=level))
            first = next(i for i, block in enumerate(blocks) if block.level == level)
            above = sum(1 for block in blocks[:first] if 0 < block.level < level)
            for section in sections[1 : 1 + above]:
                section.matter = section.matter or BEFORE_FIRST
            return sections
    return None


def _heading_title(block: Block, deepest: int) -> str | None:
    return block.text if 0 < block.level <= deepest else None


def split_at_pattern(blocks: Sequence[Block], pattern: re.Pattern[str]) -> list[Section]:
    """Sections starting at each block whose start matches `pattern`; titled by its group
    `title` where it has one and it matched, else by the whole block."""

    def title(block: Block) -> str | None:
        match = pattern.match(block.text)
        if match is None:
            return None
        return pattern_title(match, block.text)

    return _split(blocks, title)


def pattern_title(match: re.Match[str], line: str) -> str:
    named = match.groupdict().get("title")
    return " ".join((named or line).split())


def _split(blocks: Sequence[Block], title_of: Callable[[Block], str | None]) -> list[Section]:
    sections = [Section(None, matter=BEFORE_FIRST)]
    for block in blocks:
        title = title_of(block)
        if title is None:
            sections[-1].blocks.append(block)
        else:
            sections.append(Section(title, matter=block.matter))
    return sections


def chapters_of(sections: Sequence[Section]) -> list[Chapter]:
    """The chapters sections make: titled (by their heading, else "Chapter N"), their opening
    heading left out of the text where it only repeats the title (the title is spoken), and
    those with nothing to read (a part's title page, an image) dropped."""
    chapters = []
    for section in sections:
        matter = section.marked_matter()
        blocks = _without_title_headings(section.blocks, section.title or "")
        text = Section(section.title, blocks, matter).text()
        if not text:
            continue
        title = section.title or (None if matter is None else matter.capitalize())
        chapters.append(Chapter(title or "", text, matter))
    count = 0
    numbered = []
    for chapter in chapters:
        if chapter.matter is None:
            count += 1
        numbered.append(chapter if chapter.title else replace(chapter, title=f"Chapter {count}"))
    return numbered


# "Chapter 12", "CHAPTER XII.", "12", "Part Two": a heading that only numbers a chapter.
_NUMBER_HEADING = re.compile(
    r"(?i)\s*(?:(?:chapter|part|book|section)\s+[\w-]+|[0-9]+|[ivxlcdm]+)\s*[.:]?\s*"
)


def _without_title_headings(blocks: Sequence[Block], title: str) -> list[Block]:
    """`blocks` without the headings they open with that repeat `title` or only number it."""
    kept = list(blocks)
    wanted = _letters(title)
    while kept and kept[0].level:
        heading = _letters(kept[0].text)
        if not heading or not (heading in wanted or _NUMBER_HEADING.fullmatch(kept[0].text)):
            break
        kept.pop(0)
    return kept


def _letters(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())
