"""The docs keep themselves true: every field a manifest or profile may set is documented in
docs/manifest.md and every documented field exists; every command and exit code is in the
README; every install command the README or an error message gives is one form, naming extras
that exist, that works from a clone (songbatch is not on a package index)."""

from __future__ import annotations

import importlib.metadata
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import BaseModel

import songbatch.errors as errors
from songbatch.cli.main import app
from songbatch.errors import SongbatchError, install_hint
from songbatch.manifest import (
    Credits,
    LayerPauses,
    Parts,
    Pauses,
    _RawAlbum,
    _RawAudiobook,
    _RawChapter,
    _RawEncoding,
    _RawLayer,
    _RawTrack,
    _RawVoice,
)
from songbatch.profiles import (
    DeviceCost,
    EngineConfig,
    PredictEstimate,
    PriceRule,
    RateLimit,
    RayConfig,
    RemoteModel,
    ReplicateConfig,
    RetryPolicy,
    Spill,
    _ProfileFile,
)

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
MANIFEST_DOC = (REPO / "docs" / "manifest.md").read_text(encoding="utf-8")

# Each documented table, by the heading above it, and the model whose fields it lists. Where a
# heading holds two tables, the text just before each names it.
SECTIONS: dict[tuple[str, str | None], type[BaseModel]] = {
    ("Audiobooks (`kind: audiobook`)", None): _RawAudiobook,
    ("Chapters", None): _RawChapter,
    ("Voice", None): _RawVoice,
    ("Pauses", None): Pauses,
    ("Parts", None): Parts,
    ("Encoding", None): _RawEncoding,
    ("Credits", None): Credits,
    ("Albums (`kind: album`)", None): _RawAlbum,
    ("Tracks", None): _RawTrack,
    ("Layers", None): _RawLayer,
    ("Layer pauses", None): LayerPauses,
    ("Profiles", None): _ProfileFile,
    ("Engine", None): EngineConfig,
    ("Device cost", None): DeviceCost,
    ("Ray", None): RayConfig,
    ("Spill-over", None): Spill,
    ("Replicate", None): ReplicateConfig,
    ("Replicate models", None): RemoteModel,
    ("Replicate price and predict time", "`price:`"): PriceRule,
    ("Replicate price and predict time", "`predict:`"): PredictEstimate,
    ("Replicate rate and retry", "`rate:`"): RateLimit,
    ("Replicate rate and retry", "`retry:`"): RetryPolicy,
}
ROOTS = (_RawAudiobook, _RawAlbum, _ProfileFile)


def documented_tables() -> dict[tuple[str, str | None], set[str]]:
    """First-column field names of each table in docs/manifest.md, keyed like SECTIONS."""
    tables: dict[tuple[str, str | None], set[str]] = {}
    heading, label, current = "", None, None
    for line in MANIFEST_DOC.splitlines():
        if line.startswith("#"):
            heading, label, current = line.lstrip("#").strip(), None, None
        elif line.startswith("|"):
            name = re.match(r"\|\s*`([a-z_0-9]+)`\s*\|", line)
            if current is None:
                current = tables.setdefault((heading, label), set())
            if name:
                current.add(name.group(1))
        else:
            current = None
            label_match = re.fullmatch(r"(`[a-z_]+:`)(?: \(.*\))?", line.strip())
            if label_match:
                label = label_match.group(1)
    return tables


def nested_models(model: type[BaseModel]) -> set[type[BaseModel]]:
    """The models reachable from `model`'s fields (through lists, maps and unions)."""
    found: set[type[BaseModel]] = set()

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.add(annotation)
                for info in annotation.model_fields.values():
                    visit(info.annotation)
            return
        for argument in typing.get_args(annotation):
            visit(argument)

    visit(model)
    return found


def test_every_model_a_user_writes_has_a_documented_table() -> None:
    reachable = set().union(*(nested_models(root) for root in ROOTS))
    assert reachable - set(SECTIONS.values()) == set()


@pytest.mark.parametrize("section", list(SECTIONS), ids=lambda s: f"{s[0]} {s[1] or ''}")
def test_documented_fields_are_the_model_fields(section: tuple[str, str | None]) -> None:
    tables = documented_tables()
    assert section in tables, f"docs/manifest.md has no table under {section}"
    model = SECTIONS[section]
    fields = {info.alias or name for name, info in model.model_fields.items()}
    documented = tables[section]
    assert fields - documented == set(), "fields missing from docs/manifest.md"
    assert documented - fields == set(), "documented fields that do not exist"


def readme_table(heading: str) -> list[str]:
    """First cells of the table under the README heading or paragraph `heading`."""
    start = README.index(heading)
    cells = []
    for line in README[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells.append(line.split("|")[1].strip())
        elif cells:
            break
    return cells


def test_every_command_is_in_the_readme_and_no_other() -> None:
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    listed = {
        re.match(r"`songbatch (\w+)", cell).group(1) for cell in readme_table("## Commands")[2:]
    }  # type: ignore[union-attr]
    assert listed == commands


def error_exit_codes() -> set[int]:
    def subclasses(cls: type) -> set[type]:
        return {cls} | {sub for child in cls.__subclasses__() for sub in subclasses(child)}

    return {error.exit_code for error in subclasses(SongbatchError)}


def test_every_exit_code_is_in_the_readme_and_no_other() -> None:
    listed = {int(cell.strip("`")) for cell in readme_table("Exit codes:")[2:]}
    # 0: done; 1: some jobs or files failed; 4: the time limit; 70: a bug (cli._guard).
    assert listed == error_exit_codes() | {0, 1, 4, 70}
    assert errors.LedgerBusy.exit_code == 75


def install_commands(text: str) -> list[str]:
    return re.findall(r"pip install (?:-q |-e )*('[^']+'|\S+)", text)


def hint_sources() -> str:
    sources = sorted((REPO / "src" / "songbatch").rglob("*.py"))
    sources += sorted((REPO / "profiles").glob("*.yaml"))
    return "\n".join(p.read_text(encoding="utf-8") for p in sources)


def test_install_commands_work_from_a_clone_and_name_real_extras() -> None:
    extras = set(importlib.metadata.metadata("songbatch").get_all("Provides-Extra") or [])
    commands = install_commands(README) + install_commands(hint_sources())
    ours = [c.strip("'") for c in commands if "songbatch" in c or c.strip("'").startswith(".")]
    ours = [c for c in ours if "{" not in c]  # install_hint's template, checked below
    assert ours, "the README installs songbatch somewhere"
    for command in ours:
        assert not command.startswith("songbatch"), f"{command}: not on a package index"
        named = re.fullmatch(r"\.(?:\[([a-z,]+)\])?", command)
        assert named, f"pip install {command}: expected . or '.[extra,...]'"
        assert set(filter(None, (named.group(1) or "").split(","))) <= extras


def test_error_hints_install_as_the_readme_does() -> None:
    for extra in ("replicate", "local", "chatterbox", "ray"):
        hint = install_hint(extra)
        assert hint.startswith("pip install '.[")
        command = hint.split(" in ")[0]
        assert command.replace("pip install ", "") in {f"'.[{extra}]'"}
    assert "pip install '.[replicate]'" in README
    assert "pip install '.[local,chatterbox]'" in README
