"""Chatterbox English's T3 token loop over several chunks at once.

chatterbox-tts 0.1.7 samples speech tokens for one text per call: a batch of two rows (the text
and its classifier-free-guidance twin), one forward pass per token. A 520M Llama at two rows
leaves a GPU mostly idle, so the time per token is overhead, and B chunks sampled together cost
about what one does. This is the library's own loop (`T3.inference`), written for B chunks:

- the same inputs per row: conditioning, text with start/stop tokens, the start-of-speech token
  (twice, as the library does: once from `prepare_input_embeds`, once appended);
- rows left-padded to one length, with an attention mask and position ids counted from each
  row's first real token, so every row sees exactly the positions it would see alone;
- the same processing per step: CFG combine, repetition penalty, temperature, min-p, top-p;
- sampling from one `torch.Generator` per row, seeded with that row's seed, so a chunk's tokens
  do not depend on its batch-mates (floating point aside: a batched kernel may round a logit
  differently, which can rarely flip one sampled token);
- a row stops at its stop token, at `max_new_tokens`, or as soon as its valid tokens already
  make it longer than `max_valid_tokens` allows (QA would reject it: sampling on is waste).

Unlike the library's loop, a step does not wait for the device: the host would otherwise stall
the queue of kernels once per token, which costs most at small batches on a GPU.

- Each row's stop flag, length and why it stopped are device tensors, updated with
  `torch.where`; a finished row is forced to its stop token from then on. On an accelerator
  the host reads the flags every `CHECK_EVERY` steps (on a CPU, where a read waits for nothing,
  every step), so the loop may run a few steps past its last row's stop; those steps change
  nothing a row returns. The results come back in one read at the end.
- Speech positions are looked up in the position embedding once per loop, not with a host int
  copied over at every step (`get_fixed_embedding`).
- The attention mask and the token buffer are allocated once at full length and sliced per step;
  with SDPA the mask is the 4D one transformers would build at every step (with a host check).
- At a look that finds at least `DROP_AT` of the rows left finished, those rows leave the batch:
  the KV cache (`DynamicCache.batch_select_indices`), mask and position ids keep the other rows'
  conditional and CFG rows, and every per-row tensor and generator the other rows. The rows left
  then run at a smaller batch, which may round a logit differently on a GPU (as padding may).

Only the English variant: Multilingual adds an alignment analyser per row and Turbo its own
loop; both keep the library's one-chunk path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)

from songbatch.engines.base import ProgressFn

# Speech token ids below this are audio; 6561/6562 are start/stop, the rest padding.
SPEECH_VOCAB = 6561


@dataclass(frozen=True)
class Sampling:
    """Settings that must be equal across one batched loop (the library's `generate` names)."""

    cfg_weight: float = 0.5
    temperature: float = 0.8
    min_p: float = 0.05
    top_p: float = 1.0
    repetition_penalty: float = 1.2


@dataclass(frozen=True)
class Row:
    cond: Any  # chatterbox T3Cond, with this chunk's exaggeration
    text_tokens: torch.Tensor  # (1, n): the tokenizer's ids, without start/stop
    seed: int
    max_valid_tokens: int  # more valid tokens than this: a run-on, stopped early


@dataclass(frozen=True)
class RowTokens:
    tokens: torch.Tensor  # (n,) as the library returns them: up to and including the stop
    stopped: bool  # sampled its stop token
    run_on: bool  # stopped early for exceeding max_valid_tokens


def sample_speech_tokens(
    t3: Any,
    rows: Sequence[Row],
    sampling: Sampling,
    *,
    max_new_tokens: int,
    progress: ProgressFn,
) -> list[RowTokens]:
    with torch.inference_mode():
        return _Loop(t3, rows, sampling, progress).run(max_new_tokens)


def first_logits(t3: Any, rows: Sequence[Row], sampling: Sampling) -> torch.Tensor:
    """The speech logits after each row's prompt, (2 x rows, vocab), conditional then CFG twin
    per row: what the first token is sampled from (tests check padding changes nothing)."""
    with torch.inference_mode():
        out, _, _ = _Loop(t3, rows, sampling, lambda: None).prompt_pass()
        logits: torch.Tensor = t3.speech_head(out.last_hidden_state[:, -1, :])
        return logits.float()


class _Loop:
    # How often (in steps) the host looks at the rows' stop flags on an accelerator: each look
    # waits for the device to catch up, and a late look only costs a few steps on rows already
    # forced to the stop token. A CPU computes as the host goes, so there a look costs nothing
    # and the loop looks at every step (a late look would only add steps).
    CHECK_EVERY = 8
    # Finished rows leave the batch (KV cache and all) once this share of the rows left is done.
    DROP_AT = 0.5

    def __init__(
        self,
        t3: Any,
        rows: Sequence[Row],
        sampling: Sampling,
        progress: ProgressFn,
        *,
        check_every: int | None = None,
        drop_at: float | None = DROP_AT,
    ):
        self.t3 = t3
        self.rows = list(rows)
        self.sampling = sampling
        self.progress = progress
        self.drop_at = drop_at
        self.checks = 0  # how many times the host looked at the stop flags (tests count them)
        self.drops = 0  # how many times finished rows left the batch
        self.device = t3.device
        if check_every is None:
            check_every = 1 if torch.device(self.device).type == "cpu" else self.CHECK_EVERY
        self.check_every = check_every
        hp = t3.hp
        self.start, self.stop = int(hp.start_speech_token), int(hp.stop_speech_token)
        self.penalty = RepetitionPenaltyLogitsProcessor(penalty=float(sampling.repetition_penalty))
        self.min_p = MinPLogitsWarper(min_p=sampling.min_p)
        self.top_p = TopPLogitsWarper(top_p=sampling.top_p)

    def run(self, max_new_tokens: int) -> list[RowTokens]:
        out, mask, positions = self.prompt_pass()
        state = _Rows.start(self.rows, self.start, max_new_tokens, self.device)
        prompt = mask.size(1)
        step_mask = self._step_mask(mask, max_new_tokens)
        table = self._position_table(max_new_tokens)
        for step in range(max_new_tokens):
            logits = self.t3.speech_head(out.last_hidden_state[:, -1, :])
            tokens = self._sample(logits.float(), state.history, state.generators)
            state.record(tokens, step, self.stop)
            self.progress()
            if step + 1 == max_new_tokens:
                break
            if (step + 1) % self.check_every == 0:
                done = self._look(state)
                if all(done):
                    break
                if self.drop_at is not None and sum(done) >= self.drop_at * len(done):
                    pairs = state.drop([i for i, d in enumerate(done) if not d])
                    self.drops += 1
                    out.past_key_values.batch_select_indices(pairs)
                    positions = positions[pairs]
                    step_mask = None if step_mask is None else step_mask[pairs]
            step_embeds = self.t3.speech_emb(state.last[:, None]) + self._position(table, step + 1)
            positions = positions[:, -1:] + 1
            out = self.t3.tfmr(
                inputs_embeds=step_embeds.repeat_interleave(2, dim=0),
                attention_mask=None if step_mask is None else step_mask[..., : prompt + step + 1],
                position_ids=positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        return state.finish()

    def _step_mask(self, prompt_mask: torch.Tensor, max_new_tokens: int) -> torch.Tensor | None:
        """The attention mask of every step after the prompt, at full length: each step slices it
        to past + current length (transformers wants that length), instead of growing one.

        No padding: no mask, as transformers drops an all-ones one. With SDPA: the 4D boolean
        mask transformers would build from the 2D one (a one-token query at the end sees every
        earlier position, so only padding is masked), built once, because building it checks the
        2D mask on the host (`padding_mask.all()`) at every step."""
        if bool(prompt_mask.all()):
            return None
        ones = prompt_mask.new_ones((prompt_mask.size(0), max_new_tokens))
        full = torch.cat([prompt_mask, ones], dim=1)
        if self.t3.tfmr.config._attn_implementation != "sdpa":
            return full
        return full.bool()[:, None, None, :]

    def _look(self, state: _Rows) -> list[bool]:
        """The rows' stop flags on the host: the loop's only wait for the device."""
        self.checks += 1
        return cast(list[bool], state.done.tolist())

    def _position_table(self, max_new_tokens: int) -> torch.Tensor:
        """Speech positions 1 .. max_new_tokens - 1 (what the steps after the first add), looked
        up once on the device: `get_fixed_embedding(i)` copies a host int over at every step."""
        pos_emb = self.t3.speech_pos_emb
        end = min(max_new_tokens, pos_emb.emb.num_embeddings)
        ids = torch.arange(1, max(end, 1), device=self.device)
        table: torch.Tensor = pos_emb.get_fixed_embedding(ids)  # (1, end - 1, dim)
        return table

    def _position(self, table: torch.Tensor, position: int) -> torch.Tensor:
        if position <= table.size(1):
            return table[:, position - 1 : position]
        # Past the table: the library's lookup, which raises as the library's loop would.
        fixed: torch.Tensor = self.t3.speech_pos_emb.get_fixed_embedding(position)
        return fixed

    def prompt_pass(self) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """The forward pass over every row's prompt: (model output, mask, position ids)."""
        embeds, mask = self._prompt()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.t3.tfmr(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True
        )
        return out, mask, positions

    def _prompt(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row's [conditioning, text, start, start] embeddings, with its CFG twin after
        it, left-padded to one length; and the attention mask."""
        hp = self.t3.hp
        start = torch.full((2, 1), self.start, dtype=torch.long, device=self.device)
        bos = self.t3.speech_emb(start[:1]) + self.t3.speech_pos_emb.get_fixed_embedding(0)
        pieces = []
        for row in self.rows:
            text = F.pad(row.text_tokens.to(self.device), (1, 0), value=hp.start_text_token)
            text = F.pad(text, (0, 1), value=hp.stop_text_token)
            embeds, _ = self.t3.prepare_input_embeds(
                t3_cond=row.cond,
                text_tokens=torch.cat([text, text]),
                speech_tokens=start,
                cfg_weight=self.sampling.cfg_weight,
            )
            pieces.append(torch.cat([embeds, bos.expand(2, -1, -1)], dim=1))
        longest = max(piece.size(1) for piece in pieces)
        width = pieces[0].size(2)
        embeds = pieces[0].new_zeros((2 * len(pieces), longest, width))
        mask = torch.zeros((2 * len(pieces), longest), dtype=torch.long, device=self.device)
        for index, piece in enumerate(pieces):
            embeds[2 * index : 2 * index + 2, longest - piece.size(1) :] = piece
            mask[2 * index : 2 * index + 2, longest - piece.size(1) :] = 1
        return embeds, mask

    def _sample(
        self, logits: torch.Tensor, generated: torch.Tensor, generators: list[torch.Generator]
    ) -> torch.Tensor:
        ids = cast(torch.LongTensor, generated)
        cond, uncond = logits[0::2], logits[1::2]
        combined = cond + self.sampling.cfg_weight * (cond - uncond)
        combined = self.penalty(ids, combined)
        if self.sampling.temperature != 1.0:
            combined = combined / self.sampling.temperature
        combined = self.min_p(ids, combined)
        combined = self.top_p(ids, combined)
        probs = torch.softmax(combined, dim=-1)
        picks = [
            torch.multinomial(probs[index : index + 1], 1, generator=generator)
            for index, generator in enumerate(generators)
        ]
        return torch.cat(picks).flatten()


@dataclass
class _Rows:
    """Per-row state on the device for the rows still in the batch (`index`: their numbers in
    the call), and what every row ended with once it left (`result_*`, one row per row of the
    call). Nothing here waits for the device; `finish` reads the results back once."""

    index: list[int]
    generators: list[torch.Generator]
    generated: torch.Tensor  # (n, 1 + max_new_tokens): the start token, then each step's token
    steps: int  # columns of `generated` after the start token filled so far
    valid: torch.Tensor  # (n,) speech tokens sampled before the row finished
    limits: torch.Tensor  # (n,) each row's max_valid_tokens
    lengths: torch.Tensor  # (n,) tokens up to and including the one it finished on
    stopped: torch.Tensor  # (n,) finished on its stop token
    run_on: torch.Tensor  # (n,) finished for exceeding max_valid_tokens
    done: torch.Tensor  # (n,) finished: from then on forced to the stop token
    result_generated: torch.Tensor
    result_lengths: torch.Tensor
    result_stopped: torch.Tensor
    result_run_on: torch.Tensor

    @classmethod
    def start(
        cls, rows: Sequence[Row], start: int, max_new_tokens: int, device: torch.device
    ) -> _Rows:
        count = len(rows)
        generated = torch.full((count, 1 + max_new_tokens), start, dtype=torch.long, device=device)
        flags = torch.zeros(count, dtype=torch.bool, device=device)
        lengths = torch.full((count,), max_new_tokens, dtype=torch.long, device=device)
        return cls(
            index=list(range(count)),
            generators=[
                torch.Generator(device=device).manual_seed(row.seed % 2**63) for row in rows
            ],
            generated=generated,
            steps=0,
            valid=torch.zeros(count, dtype=torch.long, device=device),
            limits=torch.tensor([row.max_valid_tokens for row in rows], device=device),
            lengths=lengths,
            stopped=flags.clone(),
            run_on=flags.clone(),
            done=flags.clone(),
            result_generated=generated.clone(),
            result_lengths=lengths.clone(),
            result_stopped=flags.clone(),
            result_run_on=flags.clone(),
        )

    @property
    def history(self) -> torch.Tensor:
        """The tokens so far, start token first: what the repetition penalty looks at."""
        return self.generated[:, : 1 + self.steps]

    @property
    def last(self) -> torch.Tensor:
        return self.generated[:, self.steps]

    def record(self, tokens: torch.Tensor, step: int, stop: int) -> None:
        """Step `step`'s sampled tokens: finished rows get the stop token, and a row that
        finishes now keeps its length and why, as device tensors."""
        tokens = torch.where(self.done, torch.full_like(tokens, stop), tokens)
        self.steps += 1
        self.generated[:, self.steps] = tokens
        self.valid += (tokens < SPEECH_VOCAB) & ~self.done
        hit = tokens == stop
        finished = ~self.done & (hit | (self.valid > self.limits))
        self.lengths = torch.where(finished, step + 1, self.lengths)
        self.stopped |= finished & hit
        self.run_on |= finished & ~hit
        self.done |= finished

    def drop(self, keep: list[int]) -> torch.Tensor:
        """Keep only the rows at positions `keep`; returns the batch rows to keep in the model's
        tensors (each row's conditional and CFG twin)."""
        self._save([i for i in range(len(self.index)) if i not in keep])
        rows = torch.tensor(keep, dtype=torch.long, device=self.generated.device)
        self.index = [self.index[i] for i in keep]
        self.generators = [self.generators[i] for i in keep]
        for name in ("generated", "valid", "limits", "lengths", "stopped", "run_on", "done"):
            setattr(self, name, getattr(self, name)[rows])
        return torch.stack([2 * rows, 2 * rows + 1], dim=1).flatten()

    def finish(self) -> list[RowTokens]:
        self._save(list(range(len(self.index))))
        lengths = self.result_lengths.tolist()
        stopped = self.result_stopped.tolist()
        run_on = self.result_run_on.tolist()
        return [
            RowTokens(self.result_generated[i, 1 : lengths[i] + 1], stopped[i], run_on[i])
            for i in range(len(lengths))
        ]

    def _save(self, positions: list[int]) -> None:
        """Copy the rows at `positions` into the results (device to device)."""
        if not positions:
            return
        device = self.generated.device
        here = torch.tensor(positions, dtype=torch.long, device=device)
        there = torch.tensor([self.index[i] for i in positions], dtype=torch.long, device=device)
        self.result_generated[there] = self.generated[here]
        self.result_lengths[there] = self.lengths[here]
        self.result_stopped[there] = self.stopped[here]
        self.result_run_on[there] = self.run_on[here]
