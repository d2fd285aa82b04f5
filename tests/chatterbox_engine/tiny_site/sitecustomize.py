"""Put on PYTHONPATH by test_cli_render.py so that every process of a `songbatch render` run
(the CLI and its spawned workers) loads the tiny Chatterbox checkpoint that test wrote.

A worker process cannot take the patches a test applies in its own process, and two things in
chatterbox-tts 0.1.7 are fixed in code rather than read from a checkpoint:
- T3's Llama shape comes from `LLAMA_CONFIGS["Llama_520M"]` (24 layers): here it is one layer,
  matching the weights the test saved.
- Random weights never sample the stop token, so T3 would run to its 1000-token limit: here each
  call samples about as many speech tokens as its text would take to say at 14 characters per
  second (25 tokens per second), so the engine's QA sees plausible durations. That holds for
  the library's loop (`T3.inference`) and for songbatch's batched one (the longest text of the
  batch sets its budget).
Everything else - from_pretrained through the Hugging Face cache, from_local, the voice
conditionals, S3Gen, the watermarker - is the package's own code.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS

    from songbatch.engines import chatterbox_batch as batch

TOKENS_PER_CHAR = 25 / 14
# The test's tiny model: one layer, the library's 520M config otherwise (see tiny_chatterbox.py).
LLAMA_CONFIGS["Llama_520M"] = {
    **LLAMA_CONFIGS["Llama_520M"],
    "num_hidden_layers": 1,
    "intermediate_size": 256,
}


def _budget(text_chars: int) -> int:
    return max(8, round(1.2 * TOKENS_PER_CHAR * text_chars))


_inference = T3.inference


@functools.wraps(_inference)
def _paced_inference(self: Any, *args: Any, **kwargs: Any) -> Any:
    text_chars = int(kwargs["text_tokens"].shape[-1]) - 2  # less the start and stop tokens
    kwargs["max_new_tokens"] = _budget(text_chars)
    return _inference(self, *args, **kwargs)


T3.inference = _paced_inference  # type: ignore[method-assign]

_sample = batch.sample_speech_tokens


@functools.wraps(_sample)
def _paced_sample(t3: Any, rows: Any, sampling: Any, *, max_new_tokens: int, **kw: Any) -> Any:
    longest = max(int(row.text_tokens.shape[-1]) for row in rows)
    return _sample(t3, rows, sampling, max_new_tokens=_budget(longest), **kw)


batch.sample_speech_tokens = _paced_sample
