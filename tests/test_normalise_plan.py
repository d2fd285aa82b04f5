"""Normalisation and the lexicon through planning, the ledger, the CLI and the offline engine:
every chapter reads the lexicon, a job's key follows the words its engine gets (chunks whose
words do not change keep their keys), `plan --show-text`, bad lexicons as one-line errors, and
espeak-ng phonemes that change the audio."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from helpers.examples import REPO, invoke
from songbatch.engines.base import EngineSpec, RenderRequest
from songbatch.engines.offline import OfflineSpeech
from songbatch.ledger import Ledger
from songbatch.manifest import _RawLexiconEntry, load_manifest
from songbatch.planner import Plan, commit_plan, plan_manifest, preview_plan
from songbatch.profiles import resolve_profile
from songbatch.workspace import Workspace

BOOK = """\
kind: audiobook
title: The Deep Ones
author: A. Writer
profile: offline
formats: [mp3]
{extra}
chapters:
  - title: Chapter I
    text: |
      Cthulhu sleeps beneath the waves.

      Nothing here changes at all.
  - title: The Second
    text: |
      Dr. Armitage paid $4.50 for the book.

      The sea was grey and cold.
  - title: The Third
    text: |
      In 1928 the cult of CTHULHU rose.
"""

LEXICON = """\
lexicon:
  Cthulhu: {say: kuh-THOO-loo, espeak: "k@T'u:lu:"}
  Armitage: AR-mi-tij
"""


def _book(folder: Path, extra: str = "") -> Path:
    path = folder / "book.yaml"
    path.write_text(BOOK.format(extra=extra), encoding="utf-8")
    return path


def _plan(workspace: Path, manifest: Path, profile: str = "offline") -> Plan:
    where = Workspace(workspace)
    return plan_manifest(load_manifest(manifest), resolve_profile(profile, None, where), where)


def _texts(plan: Plan) -> dict[int, list[str]]:
    """Each chapter's job texts, in order."""
    by_key = {job.key: job for job in plan.jobs}
    texts: dict[int, list[str]] = {}
    for row in sorted(plan.rows, key=lambda r: (r.unit, r.seq)):
        texts.setdefault(row.unit, []).append(by_key[row.key].request.text)
    return texts


def test_the_lexicon_is_read_in_every_chapter(tmp_path: Path) -> None:
    book = _book(tmp_path, LEXICON)
    espeak = _texts(_plan(tmp_path, book))
    assert espeak[0][1] == "[[k@T'u:lu:]] sleeps beneath the waves."
    assert espeak[1][1] == "Doctor AR-mi-tij paid four dollars fifty cents for the book."
    # "CTHULHU" in capitals is the same name; the title's Roman numeral is a number.
    assert espeak[2] == ["The Third", "In nineteen twenty-eight the cult of [[k@T'u:lu:]] rose."]
    assert espeak[0][0] == "Chapter one"
    # An engine that reads no phonemes gets the respelling (synthetic declares none).
    respelled = _texts(_plan(tmp_path, book, profile=_synthetic_profile(tmp_path)))
    assert respelled[0][1] == "kuh-THOO-loo sleeps beneath the waves."
    assert respelled[2][1] == "In nineteen twenty-eight the cult of kuh-THOO-loo rose."


def _synthetic_profile(folder: Path) -> str:
    path = folder / "synthetic.yaml"
    path.write_text(
        "name: synthetic\nspeech: {engine: synthetic, model: fixed}\n"
        "music: {engine: synthetic, model: fixed}\ndevices: cpu:1\n",
        encoding="utf-8",
    )
    return str(path)


def test_a_shared_lexicon_file_is_read_and_the_books_own_entries_win(tmp_path: Path) -> None:
    (tmp_path / "names.yaml").write_text(
        "lexicon:\n  Cthulhu: kuh-THOO-loo\n  Armitage: ARM-it-idge\n", encoding="utf-8"
    )
    book = _book(tmp_path, "lexicon_file: names.yaml\nlexicon:\n  Armitage: AR-mi-tij\n")
    texts = _texts(_plan(tmp_path, book))
    assert texts[0][1] == "kuh-THOO-loo sleeps beneath the waves."
    assert texts[1][1] == "Doctor AR-mi-tij paid four dollars fifty cents for the book."


def test_turning_normalisation_off_changes_only_the_keys_of_chunks_it_changed(
    tmp_path: Path,
) -> None:
    on = _plan(tmp_path, _book(_mkdir(tmp_path / "on")))
    off = _plan(tmp_path, _book(_mkdir(tmp_path / "off"), "normalise: false"))
    on_texts, off_texts = _texts(on), _texts(off)
    assert off_texts[1][1] == "Dr. Armitage paid $4.50 for the book."
    changed = unchanged = 0
    for unit in on_texts:
        on_keys = [r.key for r in on.rows if r.unit == unit]
        off_keys = [r.key for r in off.rows if r.unit == unit]
        for on_text, off_text, on_key, off_key in zip(
            on_texts[unit], off_texts[unit], on_keys, off_keys, strict=True
        ):
            if on_text == off_text:
                unchanged += 1
                assert on_key == off_key, on_text
            else:
                changed += 1
                assert on_key != off_key, on_text
    # "Chapter I", the $4.50 sentence, the 1928 sentence change; five chunks do not.
    assert (changed, unchanged) == (3, 5)


def _written(plan: Plan) -> dict[int, list[str | None]]:
    """Each chapter's rows' written words, in order."""
    written: dict[int, list[str | None]] = {}
    for row in sorted(plan.rows, key=lambda r: (r.unit, r.seq)):
        written.setdefault(row.unit, []).append(row.written)
    return written


def test_each_row_keeps_the_written_words_its_chunk_says(tmp_path: Path) -> None:
    plan = _plan(tmp_path, _book(tmp_path, LEXICON))
    texts, written = _texts(plan), _written(plan)
    assert texts[1][1] == "Doctor AR-mi-tij paid four dollars fifty cents for the book."
    # Only where the words differ: a chunk said as written keeps none (its text is them).
    assert written == {
        0: ["Chapter I", "Cthulhu sleeps beneath the waves.", None],
        1: [None, "Dr. Armitage paid $4.50 for the book.", None],
        2: [None, "In 1928 the cult of CTHULHU rose."],
    }
    # Not in any job: the keys are the spoken text's.
    assert all("Dr." not in job.request.text for job in plan.jobs)


def test_a_book_read_as_written_keeps_no_written_words(tmp_path: Path) -> None:
    plan = _plan(tmp_path, _book(tmp_path, "normalise: false"))
    assert {row.written for row in plan.rows} == {None}


def test_a_rewrite_cut_over_two_chunks_is_written_whole_in_the_first(tmp_path: Path) -> None:
    folder = _mkdir(tmp_path / "profiles")
    (folder / "short.yaml").write_text(
        "name: short\nspeech: {engine: offline, model: espeak-ng, max_chars: 40}\n"
        "music: {engine: offline, model: sketch}\ndevices: cpu\n",
        encoding="utf-8",
    )
    manifest = tmp_path / "book.yaml"
    manifest.write_text(
        "kind: audiobook\ntitle: T\nauthor: A\nformats: [mp3]\nspeak_titles: false\n"
        "chapters:\n  - title: One\n    text: It cost $1,234,567.89 in all.\n",
        encoding="utf-8",
    )
    plan = _plan(tmp_path, manifest, "short")
    texts, written = _texts(plan)[0], _written(plan)[0]
    assert len(texts) == 4 and texts[1].startswith("thirty-four thousand")
    # The amount is the chunk's that starts saying it; the next says none of what was written.
    assert written == ["It cost $1,234,567.89", "", "in", None]


def test_a_respelling_with_stray_spaces_is_traced_through_the_tidying(tmp_path: Path) -> None:
    lexicon = 'lexicon:\n  Armitage: {say: "  AR  mi tij "}\n  Cthulhu: " kuh THOO"\n'
    plan = _plan(tmp_path, _book(tmp_path, lexicon))
    assert _texts(plan)[1][1] == "Doctor AR mi tij paid four dollars fifty cents for the book."
    assert _written(plan)[1][1] == "Dr. Armitage paid $4.50 for the book."
    assert _written(plan)[0][1] == "Cthulhu sleeps beneath the waves."


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_a_ledger_planned_without_normalisation_keeps_every_unchanged_chunk(
    tmp_path: Path,
) -> None:
    """A book planned as before this stage (normalise: false is exactly the old text) and
    then planned with it: the ledger reuses every job whose words did not change."""
    book = _book(tmp_path, "normalise: false")
    workspace = Workspace(tmp_path)
    with Ledger(workspace.ledger_path) as ledger:
        commit_plan(ledger, _plan(tmp_path, book), workspace)
        book.write_text(BOOK.format(extra=""), encoding="utf-8")
        diff = preview_plan(ledger, _plan(tmp_path, book))
    assert (diff.new, diff.unchanged, diff.dropped) == (3, 5, 3)


def test_plan_show_text_prints_what_the_voice_reads(tmp_path: Path) -> None:
    book = _book(tmp_path, LEXICON)
    result = invoke("plan", str(book), "--workspace", str(tmp_path), "--show-text", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{book}: chapter 2, The Second (3 chunks)"
    assert lines[1:] == [
        "1  The Second  [pause 0.9 s]",
        "2  Doctor AR-mi-tij paid four dollars fifty cents for the book.  [pause 0.9 s]",
        "3  The sea was grey and cold.  [pause 2 s]",
    ]
    assert not (tmp_path / ".songbatch").exists()  # writes nothing

    as_json = invoke("plan", str(book), "-w", str(tmp_path), "--show-text", "3", "--json")
    assert as_json.exit_code == 0, as_json.output
    [chapter] = json.loads(as_json.output)
    assert chapter["title"] == "The Third"
    assert [c["text"] for c in chapter["chunks"]] == [
        "The Third",
        "In nineteen twenty-eight the cult of [[k@T'u:lu:]] rose.",
    ]


def test_plan_show_text_outside_the_book_is_one_line_exit_2(tmp_path: Path) -> None:
    result = invoke("plan", str(_book(tmp_path)), "-w", str(tmp_path), "--show-text", "4")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"songbatch: error: --show-text 4: {tmp_path / 'book.yaml'} has 3 chapter(s), 1 to 3"
    ]


def _error_of(tmp_path: Path, extra: str) -> str:
    book = _book(tmp_path, extra)
    result = invoke("plan", str(book), "--workspace", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert not (tmp_path / ".songbatch").exists()
    return lines[0]


def test_a_bad_regular_expression_is_one_line_at_its_key(tmp_path: Path) -> None:
    line = _error_of(tmp_path, "lexicon:\n  'Mc(\\w+': {say: Mac, pattern: true}\n")
    assert line.startswith(f"songbatch: error: {tmp_path / 'book.yaml'}:7:3: lexicon.Mc(\\w+: ")
    assert "not a regular expression: missing ), unterminated subpattern" in line


def test_an_unknown_lexicon_field_is_one_line_with_a_suggestion(tmp_path: Path) -> None:
    line = _error_of(tmp_path, "lexicon:\n  Cthulhu: {sya: kuh-THOO-loo}\n")
    assert line.endswith(
        "book.yaml:7:13: lexicon.Cthulhu.sya: unknown field 'sya'; did you mean 'say'?"
    )


def test_lexicon_entries_that_say_nothing_are_refused(tmp_path: Path) -> None:
    line = _error_of(tmp_path, "lexicon:\n  Cthulhu: {pattern: false}\n")
    assert line.endswith(
        "book.yaml:7:3: lexicon.Cthulhu: say how it is read: `say:` (a respelling)"
        " and/or `espeak:` or `ipa:` (phonemes)"
    )
    line = _error_of(tmp_path, 'lexicon:\n  Cthulhu: {espeak: "[[k@T\'u:lu:]]"}\n')
    assert "lexicon.Cthulhu.espeak: write the phonemes without [[ ]]" in line
    line = _error_of(tmp_path, "lexicon:\n  '.*': {say: x, pattern: true}\n")
    assert "matches empty text" in line


def test_a_bad_shared_lexicon_names_its_own_file_and_line(tmp_path: Path) -> None:
    names = tmp_path / "names.yaml"
    names.write_text(
        "lexicon:\n  Cthulhu:\n    say: kuh-THOO-loo\n    sampa: x\n", encoding="utf-8"
    )
    line = _error_of(tmp_path, "lexicon_file: names.yaml\n")
    assert line.endswith(
        "names.yaml:4:5: lexicon.Cthulhu.sampa: unknown field 'sampa'; known fields:"
        " espeak, ipa, pattern, say"
    )
    names.unlink()
    assert "lexicon_file: 'names.yaml' not found" in _error_of(
        tmp_path, "lexicon_file: names.yaml\n"
    )


def test_phonemes_change_what_espeak_ng_says(tmp_path: Path) -> None:
    """The word rendered by the offline engine from the plan's own job: with its lexicon
    entry's phonemes, without the entry, and as those phonemes given to espeak-ng directly."""
    engine = OfflineSpeech(EngineSpec("speech", "offline", "espeak-ng"))

    def rendered(extra: str) -> np.ndarray:
        plan = _plan(_mkdir(tmp_path / str(len(extra))), _book(tmp_path / str(len(extra)), extra))
        job = next(j for j in plan.jobs if "sleeps" in j.request.text)
        request = job.request.for_engine(job.key, None)
        return engine.render([request], lambda: None)[0].audio

    plain = rendered("")
    with_phonemes = rendered('lexicon:\n  Cthulhu: {espeak: "k@T\'u:lu:"}\n')
    other = rendered('lexicon:\n  Cthulhu: {espeak: "kl\'u:"}\n')
    assert plain.shape != with_phonemes.shape or not np.array_equal(plain, with_phonemes)
    assert not np.array_equal(with_phonemes[: len(other)], other[: len(with_phonemes)])
    text = "[[k@T'u:lu:]] sleeps beneath the waves."
    params = {"language": "en", "rate": 165, "pitch": 50}  # the offline profile's
    direct = engine.render([RenderRequest("k", "speech", text, 0, params)], lambda: None)[0].audio
    assert np.array_equal(with_phonemes, direct)
    # Read as phonemes, not as text: espeak-ng's own phonemes for "Hermione" (what
    # `espeak-ng -x Hermione` prints) sound exactly as the word does.
    as_hermione = rendered('lexicon:\n  Cthulhu: {espeak: "h3:m\'aI@ni"}\n')
    hermione = engine.render(
        [RenderRequest("h", "speech", "Hermione sleeps beneath the waves.", 0, params)],
        lambda: None,
    )[0].audio
    assert np.array_equal(as_hermione, hermione)


def test_the_lexicon_docs_name_every_entry_field_and_their_example_loads(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "manifest.md").read_text(encoding="utf-8")
    section = doc.split("### Lexicon\n", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
    assert documented == set(_RawLexiconEntry.model_fields)
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "series-names.yaml").write_text("lexicon:\n  Gandalf: GAN-dalf\n", "utf-8")
    book = _book(_mkdir(tmp_path / "book"), example)
    book.write_text(
        book.read_text("utf-8").replace("Cthulhu sleeps", "Gandalf met McDuff and Cthulhu sleeps"),
        "utf-8",
    )
    texts = _texts(_plan(tmp_path, book))
    assert texts[0][1] == "GAN-dalf met Mac Duff and [[k@T'u:lu:]] sleeps beneath the waves."
