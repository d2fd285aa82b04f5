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
    def __init__(self, t3: Any, rows: Sequence[Row], sampling: Sampling, progress: ProgressFn):
        self.t3 = t3
        self.rows = list(rows)
        self.sampling = sampling
        self.progress = progress
        self.device = t3.device
        hp = t3.hp
        self.start, self.stop = int(hp.start_speech_token), int(hp.stop_speech_token)
        self.generators = [
            torch.Generator(device=self.device).manual_seed(row.seed % 2**63) for row in rows
        ]
        self.penalty = RepetitionPenaltyLogitsProcessor(penalty=float(sampling.repetition_penalty))
        self.min_p = MinPLogitsWarper(min_p=sampling.min_p)
        self.top_p = TopPLogitsWarper(top_p=sampling.top_p)

    def run(self, max_new_tokens: int) -> list[RowTokens]:
        out, mask, positions = self.prompt_pass()
        count = len(self.rows)
        generated = torch.full((count, 1), self.start, dtype=torch.long, device=self.device)
        done = torch.zeros(count, dtype=torch.bool, device=self.device)
        stopped = [False] * count
        run_on = [False] * count
        valid = torch.zeros(count, dtype=torch.long, device=self.device)
        limits = torch.tensor([row.max_valid_tokens for row in self.rows], device=self.device)
        lengths = [max_new_tokens] * count
        for step in range(max_new_tokens):
            logits = self.t3.speech_head(out.last_hidden_state[:, -1, :])
            tokens = self._sample(logits.float(), generated)
            tokens = torch.where(done, torch.full_like(tokens, self.stop), tokens)
            generated = torch.cat([generated, tokens[:, None]], dim=1)
            valid += (tokens < SPEECH_VOCAB) & ~done
            finished_now = ~done & ((tokens == self.stop) | (valid > limits))
            for index in finished_now.nonzero().flatten().tolist():
                lengths[index] = step + 1
                stopped[index] = int(tokens[index]) == self.stop
                run_on[index] = not stopped[index]
            done |= finished_now
            self.progress()
            if bool(done.all()) or step + 1 == max_new_tokens:
                break
            step_embeds = self.t3.speech_emb(tokens[:, None])
            step_embeds = step_embeds + self.t3.speech_pos_emb.get_fixed_embedding(step + 1)
            mask = torch.cat([mask, mask.new_ones((mask.size(0), 1))], dim=1)
            positions = positions[:, -1:] + 1
            out = self.t3.tfmr(
                inputs_embeds=step_embeds.repeat_interleave(2, dim=0),
                attention_mask=mask,
                position_ids=positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        return [
            RowTokens(generated[index, 1 : lengths[index] + 1], stopped[index], run_on[index])
            for index in range(count)
        ]

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

    def _sample(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
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
            for index, generator in enumerate(self.generators)
        ]
        return torch.cat(picks).flatten()
