"""The batched T3 token loop before and after issue 11's host-sync work, side by side.

`old`: `chatterbox_batch` as tests/chatterbox_engine/reference_loop.py reads it from git (stop
flags read on the host at every step, a position looked up from a host int, the mask grown by
`torch.cat`, finished rows kept in the batch). `new`: the loop in this tree. Both run the same
rows, seeds and model; each row's tokens are checked equal before any time is reported. Two
cases per batch size:

- `cap`: every row runs to `--tokens` (random weights never stop): the per-step costs alone;
- `staggered`: row i is made to stop at step (i + 1) * tokens / rows (a hook on `speech_head`),
  so finished rows leave the new loop's batch.

On a CPU the model is the tiny random one from tests/chatterbox_engine (one Llama layer); on a
GPU pass `--full-size` for the library's 520M Llama, still random. Needs the chatterbox env:

    .venv-chatterbox/bin/python bench/t3_loop.py [--device cuda] [--full-size] [--batches 1 8]
        [--tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import torch

from songbatch.engines import chatterbox as cb
from songbatch.engines import chatterbox_batch as batch

ROOT = Path(__file__).resolve().parents[1]
TINY_HELPERS = ROOT / "tests" / "chatterbox_engine"
TEXTS = ["Hi.", "A longer line of text, to pad the others.", "Middling text here.", "Ok", "Why?"]


class Stopper:
    """Raises row r's stop logit from step `stops[r]` on; follows the new loop's drops."""

    def __init__(self, stop: int, stops: dict[int, int], count: int):
        self.stop, self.stops, self.rows, self.step = stop, stops, list(range(count)), 0

    def __call__(self, module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        for position, row in enumerate(self.rows):
            if self.step >= self.stops.get(row, 1 << 30):
                output[2 * position : 2 * position + 2, self.stop] += 1e4
        self.step += 1
        return output


def run(
    module: ModuleType, model: Any, rows: list[Any], stops: dict[int, int], tokens: int
) -> tuple[float, list[list[int]]]:
    stopper = Stopper(int(model.t3.hp.stop_speech_token), stops, len(rows))
    real_drop = batch._Rows.drop

    def drop(self: Any, keep: list[int]) -> torch.Tensor:
        stopper.rows = [stopper.rows[i] for i in keep]
        return real_drop(self, keep)

    batch._Rows.drop = drop  # type: ignore[method-assign]
    handle = model.t3.speech_head.register_forward_hook(stopper)
    try:
        sync(model.t3.device)
        began = time.perf_counter()
        with torch.inference_mode():
            out = module._Loop(model.t3, rows, batch.Sampling(), lambda: None).run(tokens)
        sync(model.t3.device)
        elapsed = time.perf_counter() - began
    finally:
        handle.remove()
        batch._Rows.drop = real_drop  # type: ignore[method-assign]
    return elapsed, [row.tokens.tolist() for row in out]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best(
    module: ModuleType, model: Any, rows: list[Any], stops: dict[int, int], args: argparse.Namespace
) -> tuple[float, list[list[int]]]:
    runs = [run(module, model, rows, stops, args.tokens) for _ in range(args.repeats)]
    return min(t for t, _ in runs), runs[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(TINY_HELPERS))
    import tiny_chatterbox  # type: ignore[import-not-found]  # tests/chatterbox_engine
    from reference_loop import load_reference_loop  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory() as folder:
        old = load_reference_loop(Path(folder))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = tiny_chatterbox.build_tiny_model(
                Path(folder), device=args.device, full_size=args.full_size
            )
        with cb.quiet():
            model.prepare_conditionals(str(tiny_chatterbox.write_voice(Path(folder) / "v.wav")))
        kind = "520M Llama, random" if args.full_size else "tiny random (1 layer)"
        print(
            f"T3 loop on {args.device}, {kind}, {args.tokens} tokens, best of {args.repeats}"
            " (each row's tokens checked equal)"
        )
        for size in args.batches:
            rows = [
                batch.Row(
                    model.conds.t3, model.tokenizer.text_to_tokens(TEXTS[i % 5]), 100 + i, 10**6
                )
                for i in range(size)
            ]
            run(batch, model, rows, {}, 4)  # warm-up
            cases = {
                "cap": {},
                "staggered": {i: (i + 1) * args.tokens // (size + 1) for i in range(size)},
            }
            for case, stops in cases.items():
                old_s, old_tokens = best(old, model, rows, stops, args)
                new_s, new_tokens = best(batch, model, rows, stops, args)
                assert new_tokens == old_tokens, f"batch {size} {case}: tokens differ"
                times = f"old {old_s * 1e3:8.1f} ms  new {new_s * 1e3:8.1f} ms"
                print(f"batch {size:2d} {case:9s}  {times}  old/new {old_s / new_s:5.2f}x")


if __name__ == "__main__":
    main()
