"""The batched T3 loop (`chatterbox_batch`) against the loop it replaced, token for token.

The reference is `chatterbox_batch.py` as of REFERENCE_COMMIT (a loop that looked at every
row's stop flag on the host at every step and kept finished rows in the batch), read from git.
Random weights never sample the stop token, so a hook on `speech_head` makes chosen rows stop at
chosen steps, and a low `max_valid_tokens` makes another a run-on.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("chatterbox.tts", reason="needs the chatterbox env: bash .ci/chatterbox-env")

import tiny_chatterbox as tiny
import torch
from reference_loop import load_reference_loop

from songbatch.engines import chatterbox as cb
from songbatch.engines import chatterbox_batch as batch

TEXTS = ["Hi.", "A longer line of text, to pad the others.", "Middling text here.", "Ok", "Why?"]


def load_reference(folder: Path) -> ModuleType:
    try:
        return load_reference_loop(folder)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"the reference loop needs git history: {error}")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # One intra-op thread: see test_chatterbox.py's `built` (a shared 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = tiny.build_tiny_model(folder)
    with cb.quiet():
        built.prepare_conditionals(str(tiny.write_voice(folder / "voice.wav")))
    yield built
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return load_reference(tmp_path_factory.mktemp("reference"))


class Stopper:
    """A forward hook on `speech_head`: row `r` (its number in the call) gets a stop logit far
    above the rest from step `stops[r]` on. Rows the loop drops are followed through
    `_Rows.drop`, so positions in the batch map back to rows of the call."""

    def __init__(self, stop: int, stops: dict[int, int], count: int):
        self.stop, self.stops = stop, stops
        self.rows = list(range(count))
        self.step = 0
        self.logits: list[list[torch.Tensor]] = [[] for _ in range(count)]  # per row, per step

    def __call__(self, module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for position, row in enumerate(self.rows):
            self.logits[row].append(output[2 * position : 2 * position + 2].clone())
            if row in self.stops and self.step >= self.stops[row]:
                output[2 * position : 2 * position + 2, self.stop] += 1e4
        self.step += 1
        return output

    def dropped(self, keep: list[int]) -> None:
        self.rows = [self.rows[i] for i in keep]


def make_rows(model: Any, seeds: list[int], limits: dict[int, int]) -> list[batch.Row]:
    cond = model.conds.t3
    return [
        batch.Row(
            cond,
            model.tokenizer.text_to_tokens(TEXTS[i % len(TEXTS)]),
            seed,
            max_valid_tokens=limits.get(i, 10**6),
        )
        for i, seed in enumerate(seeds)
    ]


def run_loop(
    module: ModuleType,
    model: Any,
    rows: list[batch.Row],
    stops: dict[int, int],
    max_new_tokens: int,
    monkeypatch: pytest.MonkeyPatch,
    **options: Any,
) -> tuple[list[tuple[list[int], bool, bool]], Any]:
    """(tokens, stopped, run_on) per row, and the loop object."""
    stopper = Stopper(int(model.t3.hp.stop_speech_token), stops, len(rows))
    if module is batch:
        real_drop = batch._Rows.drop

        def drop(self: Any, keep: list[int]) -> torch.Tensor:
            stopper.dropped(keep)
            return real_drop(self, keep)

        monkeypatch.setattr(batch._Rows, "drop", drop)
    handle = model.t3.speech_head.register_forward_hook(stopper)
    try:
        loop = module._Loop(model.t3, rows, batch.Sampling(), lambda: None, **options)
        with torch.inference_mode():
            out = loop.run(max_new_tokens)
    finally:
        handle.remove()
        monkeypatch.undo()
    # Each row's logits up to its last token, to the bit: sampling could hide a small difference.
    tokens = [r.tokens.tolist() for r in out]
    logits = [torch.stack(seen[: len(t)]) for seen, t in zip(stopper.logits, tokens, strict=True)]
    loop.logits = logits
    return [(t, r.stopped, r.run_on) for t, r in zip(tokens, out, strict=True)], loop


# Rows 0, 2 and 4 stop at different steps (one before the first look, one between looks, one
# after rows have been dropped), row 1 is a run-on, row 3 runs to max_new_tokens.
STOPS = {0: 2, 2: 11, 4: 19}
LIMITS = {1: 6}


@pytest.mark.parametrize(
    "options",
    [
        {"check_every": 8},
        {},
        {"check_every": 5, "drop_at": 0.2},
        {"check_every": 8, "drop_at": None},
    ],
    ids=["accelerator-default", "cpu-default", "drop-early", "no-drops"],
)
def test_tokens_match_the_per_step_loop(
    model: Any, reference: ModuleType, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    rows = make_rows(model, [11, 12, 13, 14, 15], LIMITS)
    expected, old = run_loop(reference, model, rows, STOPS, 30, monkeypatch)
    got, loop = run_loop(batch, model, rows, STOPS, 30, monkeypatch, **options)
    assert got == expected
    for mine, theirs in zip(loop.logits, old.logits, strict=True):
        if loop.drops:
            # Dropping rows changes the batch's shape, and a CPU's BLAS may then block the
            # matmuls differently: the same sums in another order (an AMD EPYC VM: 1.2e-6 on the
            # long row after its 19th step; an Intel one: none). The tokens above are equal.
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
        else:
            assert torch.equal(mine, theirs)
    assert (loop.drops > 0) == (options.get("drop_at", batch._Loop.DROP_AT) is not None)
    # The scenario is what it says: stops, a run-on (one valid token over its limit of 6; the
    # ids of padding sampled along the way do not count) and a row that ran to the cap.
    lengths = [(len(t), s, r) for t, s, r in got]
    assert lengths[0] == (3, True, False) and lengths[2] == (12, True, False)
    assert lengths[3] == (30, False, False) and lengths[4] == (20, True, False)
    assert got[1][1:] == (False, True)
    assert sum(t < batch.SPEECH_VOCAB for t in got[1][0]) == 7


def test_rows_that_all_finish_early_end_the_loop_at_the_next_look(
    model: Any, reference: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = make_rows(model, [3, 4], {})
    stops = {0: 1, 1: 9}
    expected, _ = run_loop(reference, model, rows, stops, 40, monkeypatch)
    got, loop = run_loop(batch, model, rows, stops, 40, monkeypatch, check_every=8, drop_at=None)
    assert got == expected
    assert loop.checks == 2  # after steps 8 and 16; the second finds every row done
    _, loop = run_loop(batch, model, rows, stops, 40, monkeypatch)
    assert loop.check_every == 1 and loop.checks == 10  # a CPU looks at every step


def test_a_loop_that_runs_to_the_cap_looks_every_check_every_steps(
    model: Any, reference: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = make_rows(model, [21], {})
    expected, _ = run_loop(reference, model, rows, {}, 33, monkeypatch)
    got, loop = run_loop(batch, model, rows, {}, 33, monkeypatch, check_every=8)
    assert got == expected
    assert loop.checks == 4  # after steps 8, 16, 24 and 32; none after the last


def test_progress_is_called_once_per_step(model: Any) -> None:
    calls: list[None] = []
    rows = make_rows(model, [5, 6], {})
    with torch.inference_mode():
        batch._Loop(model.t3, rows, batch.Sampling(), lambda: calls.append(None)).run(9)
    assert len(calls) == 9


def test_position_table_equals_the_librarys_lookup(model: Any) -> None:
    loop = batch._Loop(model.t3, make_rows(model, [1], {}), batch.Sampling(), lambda: None)
    pos_emb = model.t3.speech_pos_emb
    with torch.inference_mode():
        table = loop._position_table(50)
        assert table.shape == (1, 49, pos_emb.emb.embedding_dim)
        for position in range(1, 50):
            fixed = pos_emb.get_fixed_embedding(position)
            assert torch.equal(loop._position(table, position), fixed)
        # Past the table: the library's own lookup (and its error past the embedding's end).
        end = pos_emb.emb.num_embeddings
        assert torch.equal(loop._position(table, 50), pos_emb.get_fixed_embedding(50))
        with pytest.raises(IndexError):
            loop._position(loop._position_table(end + 5), end)


def test_step_mask_is_the_mask_transformers_builds(model: Any) -> None:
    from transformers.masking_utils import create_causal_mask

    loop = batch._Loop(model.t3, make_rows(model, [1, 2, 3], {}), batch.Sampling(), lambda: None)
    config = model.t3.tfmr.config
    with torch.inference_mode():
        out, mask, _ = loop.prompt_pass()
        step_mask = loop._step_mask(mask, 10)
        assert step_mask is not None and step_mask.dim() == 4  # SDPA, and rows of three lengths
        cache = out.past_key_values
        prompt = mask.size(1)
        # The first step after the prompt: transformers' mask from the grown 2D mask.
        grown = torch.cat([mask, mask.new_ones((mask.size(0), 1))], dim=1)
        embeds = torch.zeros((mask.size(0), 1, config.hidden_size))
        built = create_causal_mask(
            config=config,
            inputs_embeds=embeds,
            attention_mask=grown,
            cache_position=torch.tensor([prompt]),
            past_key_values=cache,
        )
        assert isinstance(built, torch.Tensor)
        assert torch.equal(built, step_mask[..., : prompt + 1].expand_as(built))
        # One chunk has no padding: no mask at all, as transformers would pass none.
        alone = batch._Loop(model.t3, make_rows(model, [1], {}), batch.Sampling(), lambda: None)
        assert alone._step_mask(alone.prompt_pass()[1], 10) is None
