"""A lexicon's `ipa:` entries: IPA converted to espeak-ng's mnemonics by the English table
(normalise/ipa.py), checked by round trip against espeak-ng itself (its own IPA for a word,
converted, gives the phonemes it speaks the word with, or ones that sound the same), through
the offline engine (an `ipa:` entry sounds exactly as its `espeak:` equivalent), and bad
entries as one-line errors at their place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from helpers.examples import invoke
from songbatch.engines import espeak
from songbatch.engines.base import EngineSpec
from songbatch.engines.offline import OfflineSpeech
from songbatch.manifest import load_manifest
from songbatch.normalise.ipa import IpaError, to_espeak
from songbatch.planner import plan_manifest
from songbatch.profiles import resolve_profile
from songbatch.workspace import Workspace

# Words whose espeak-ng IPA converts back to exactly the mnemonics espeak-ng says them with.
SAME_PHONEMES = {
    "en-GB": [
        "church",
        "judge",
        "thought",
        "this",
        "ship",
        "sing",
        "red",
        "hello",
        "cat",
        "bed",
        "bird",
        "boat",
        "boot",
        "book",
        "put",
        "cup",
        "dog",
        "law",
        "day",
        "buy",
        "boy",
        "now",
        "go",
        "hair",
        "poor",
        "about",
        "happy",
        "yes",
        "when",
        "loch",
        "Hermione",
        "cure",
        "sure",
        "thing",
        "rhythm",
        "urge",
        "absurd",
        "strut",
        "palm",
        "fleece",
        "choice",
        "mouth",
        "comma",
        "which",
        "fire",
        "here",
    ],
    "en-US": ["church", "water", "letter", "button", "hello", "cat", "judge", "thing"],
}
# Words where IPA does not tell espeak's phonemes apart, and the one chosen sounds the same:
# en-GB's final 3 and @ are both ə, A@ (start) and A: (palm) both ɑː, i@ and i@3 both iə.
SAME_SOUND = ["father", "measure", "letter", "start", "garden", "idea"]
VOICES = {"en-GB": "en", "en-US": "en-us"}


def _phonemes_audio(mnemonics: str, voice: str) -> npt.NDArray[np.int16]:
    return espeak.synthesize(f"[[{mnemonics}]]", voice=voice, phonemes=True)


@pytest.mark.parametrize("language", list(SAME_PHONEMES))
def test_espeaks_own_ipa_converts_back_to_its_phonemes(language: str) -> None:
    voice = VOICES[language]
    words = SAME_PHONEMES[language]
    assert len(words) >= 8
    for word in words:
        ipa = espeak.transcribe(word, voice=voice, ipa=True)
        assert to_espeak(ipa, language) == espeak.transcribe(word, voice=voice), (word, ipa)


def test_where_ipa_merges_phonemes_the_one_chosen_sounds_the_same() -> None:
    for word in SAME_SOUND:
        ipa = espeak.transcribe(word, voice="en", ipa=True)
        converted = to_espeak(ipa, "en")
        own = espeak.transcribe(word, voice="en")
        assert converted != own  # else it belongs in SAME_PHONEMES
        assert np.array_equal(_phonemes_audio(converted, "en"), _phonemes_audio(own, "en")), word


@pytest.mark.parametrize(
    ("ipa", "mnemonics"),
    [
        ("/ˈhɜːmaɪəni/", "'h3:maI@ni"),  # slashes dropped, stress where IPA writes it
        ("t͡ʃɜːtʃ", "tS3:tS"),  # a tie bar or none: the same affricate
        ("ˌɪn.təˈnæʃ.ən.əl", ",Int@'naS@n@l"),  # syllable dots dropped
        ("ðə kˈat", "D@ k'at"),  # words stay apart
        ("'hɑ:t", "'hA:t"),  # ASCII ' and : as ˈ and ː
        ("bʌʔn̩", "bV?n-"),
    ],
)
def test_the_table_reads_ipa_as_people_write_it(ipa: str, mnemonics: str) -> None:
    assert to_espeak(ipa, "en-AU") == mnemonics


def test_an_unknown_symbol_or_a_language_without_a_table_is_an_error_naming_it() -> None:
    with pytest.raises(IpaError, match=r"IPA symbol 'ʁ' \(U\+0281\) is not in the English"):
        to_espeak("ʁot", "en")
    with pytest.raises(IpaError, match=r"IPA symbol 'ɪː' \(U\+026A U\+02D0\)"):
        to_espeak("bɪːd", "en")
    with pytest.raises(IpaError, match="no IPA table for language 'de'"):
        to_espeak("ʃtʁaːsə", "de")


BOOK = """\
kind: audiobook
title: The Deep Ones
author: A. Writer
language: {language}
profile: offline
formats: [mp3]
lexicon:
{entry}
chapters:
  - title: Chapter I
    text: Cthulhu sleeps beneath the waves.
"""


def _book(folder: Path, entry: str, language: str = "en-GB") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "book.yaml"
    path.write_text(BOOK.format(entry=entry, language=language), encoding="utf-8")
    return path


def _rendered(folder: Path, entry: str) -> npt.NDArray[np.int16]:
    """The chapter's sentence as the offline engine renders the plan's own job for it."""
    workspace = Workspace(folder)
    manifest = load_manifest(_book(folder, entry))
    plan = plan_manifest(manifest, resolve_profile("offline", None, workspace), workspace)
    job = next(j for j in plan.jobs if "sleeps" in j.request.text)
    request = job.request.for_engine(job.key, None)
    engine = OfflineSpeech(EngineSpec("speech", "offline", "espeak-ng"))
    return engine.render([request], lambda: None)[0].audio


def test_an_ipa_entry_sounds_as_its_espeak_equivalent_and_changes_the_audio(
    tmp_path: Path,
) -> None:
    as_ipa = _rendered(tmp_path / "ipa", '  Cthulhu: {ipa: "kəˈθuːluː"}')
    as_espeak = _rendered(tmp_path / "espeak", '  Cthulhu: {espeak: "k@\'Tu:lu:"}')
    plain = _rendered(tmp_path / "plain", "  Other: other")
    assert np.array_equal(as_ipa, as_espeak)
    assert as_ipa.shape != plain.shape or not np.array_equal(as_ipa, plain)


def test_an_engine_without_phonemes_reads_the_respelling_or_the_word(tmp_path: Path) -> None:
    entry = '  Cthulhu: {say: kuh-THOO-loo, ipa: "kəˈθuːluː"}'
    manifest = load_manifest(_book(tmp_path, entry)).manifest
    [lexicon] = manifest.lexicon  # type: ignore[union-attr]
    assert (lexicon.spoken("espeak"), lexicon.spoken(None)) == ("[[k@'Tu:lu:]]", "kuh-THOO-loo")
    only_ipa = load_manifest(_book(tmp_path, '  Cthulhu: {ipa: "kəˈθuːluː"}')).manifest
    assert only_ipa.lexicon[0].spoken(None) is None  # type: ignore[union-attr]


def _error_of(tmp_path: Path, entry: str, language: str = "en-GB") -> str:
    result = invoke("plan", str(_book(tmp_path, entry, language)), "--workspace", str(tmp_path))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_bad_ipa_entries_are_one_line_at_their_place(tmp_path: Path) -> None:
    book = tmp_path / "book.yaml"
    line = _error_of(tmp_path, '  Cthulhu: {ipa: "kəˈθʁuː"}')
    assert line.startswith(f"songbatch: error: {book}:8:18: lexicon.Cthulhu.ipa: ")
    assert "IPA symbol 'ʁ' (U+0281) is not in the English IPA table" in line
    line = _error_of(tmp_path, '  Straße: {ipa: "ˈʃtʁaːsə"}', language="de")
    assert line.startswith(f"songbatch: error: {book}:8:17: lexicon.Straße.ipa: ")
    assert "no IPA table for language 'de'" in line
    line = _error_of(tmp_path, '  Cthulhu: {espeak: "k@\'Tu:lu:", ipa: "kəˈθuːluː"}')
    assert line.startswith(f"songbatch: error: {book}:8:")
    assert line.endswith(
        "lexicon.Cthulhu.ipa: give the phonemes once: `espeak:` or `ipa:`, not both"
    )
    assert _error_of(tmp_path, '  Cthulhu: {ipa: " "}').endswith("ipa must not be empty")
