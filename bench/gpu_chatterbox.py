"""Chatterbox throughput: the package's own one-call-at-a-time loop against songbatch's path.

- baseline: what the chatterbox README does per chunk, `model.generate(text,
  audio_prompt_path=voice)` (which analyses the voice clip again on every call), then write
  the chunk, one after the other.
- songbatch: `ChatterboxEngine` (the voice's conditionals prepared once and cached), rendering
  chunk i while a writer thread encodes and syncs chunk i-1, as a worker does.

Both use the same model object and seeds. Reported per path: wall seconds, audio seconds, the
real-time factor (wall / audio) and audio-seconds per device-second, then songbatch's speed-up
over the baseline against the 2x goal. On a CPU (or with `tiny=True`) the model is the tiny
random one from tests/chatterbox_engine: that measures the plumbing, not Chatterbox, and the
report says so. Needs the chatterbox environment (`bash .ci/chatterbox-env`):

    .venv-chatterbox/bin/python bench/gpu_chatterbox.py [--device cuda] [--chunks 8]
        [--model ResembleAI/chatterbox|/path/to/checkpoint] [--variant english] [--voice ref.wav]
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import soundfile as sf

from songbatch.audio import write_chunk
from songbatch.engines import chatterbox as cb
from songbatch.engines.base import EngineSpec, RenderRequest, RenderResult
from songbatch.errors import EngineError

TINY_HELPERS = Path(__file__).resolve().parents[1] / "tests" / "chatterbox_engine"
GOAL = 2.0
# Speech tokens per render with random weights (25 a second): about a chunk's real length.
CAP = 200
# Book-like chunks of about a sentence or two; the real model speaks each in 4-15 s.
TEXTS = (
    "The lighthouse keeper climbed the spiral stairs one last time before the storm arrived.",
    "Below, the harbour lights flickered like a second sky, and the boats pulled at their ropes.",
    "She had kept the lamp burning for thirty years, through fog and ice and the long summers.",
    "Nobody in the village remembered a night when the beam had failed to sweep the water.",
    "Tonight the wind carried voices from the sea, and she listened, and she did not answer.",
    "In the morning the keeper was gone, but the lamp was still turning, patient and bright.",
)


@dataclass
class PathResult:
    name: str
    wall_s: float
    audio_s: float
    renders: int

    @property
    def rtf(self) -> float:
        return self.wall_s / self.audio_s if self.audio_s else float("inf")

    @property
    def audio_per_device_s(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s else 0.0

    def line(self) -> str:
        return (
            f"{self.name:<10} wall {self.wall_s:7.2f} s  audio {self.audio_s:7.2f} s  "
            f"RTF {self.rtf:6.3f}  audio-s/device-s {self.audio_per_device_s:6.2f}  "
            f"renders {self.renders}"
        )


def chatterbox_bench(
    device: str = "cpu",
    chunks: int = 6,
    *,
    model: str = "ResembleAI/chatterbox",
    variant: str = "english",
    voice: Path | None = None,
    tiny: bool | None = None,
    random: bool = False,
    batch: int = 8,
    seed: int = 0,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run both paths on `chunks` chunks; return the numbers (and report them line by line).

    `tiny` None means: the tiny random model on a CPU, the real weights (`model`, from the HF
    cache or a local folder) on CUDA. Raises EngineUnavailable if real weights are missing.
    """
    tiny = not device.startswith("cuda") and not random if tiny is None else tiny
    with tempfile.TemporaryDirectory(prefix="cbx-bench-") as scratch:
        folder = Path(scratch)
        spec = _spec(model, variant, tiny or random)
        engine = _engine(spec, device, folder, tiny, random)
        reference = _voice(folder, voice)
        texts = [TEXTS[i % len(TEXTS)] for i in range(chunks)]
        what = "RANDOM WEIGHTS, real architecture" if random else _what(tiny, model)
        report(f"chatterbox bench: {variant} on {device}, {chunks} chunks, {what}")
        _warm_up(engine, reference, seed)
        baseline = _baseline(engine.model, texts, reference, folder, seed, device)
        ours = _songbatch(engine, texts, reference, folder, seed, device)
        batched = _songbatch(engine, texts, reference, folder, seed, device, batch=batch)
        engine.close()
    speedup = batched.audio_per_device_s / baseline.audio_per_device_s
    for result in (baseline, ours, batched):
        report(result.line())
    single = ours.audio_per_device_s / baseline.audio_per_device_s
    report(f"songbatch one chunk per call / baseline = {single:.2f}x")
    verdict = "meets" if speedup >= GOAL else "misses"
    report(f"songbatch batch {batch} / baseline = {speedup:.2f}x ({verdict} the {GOAL:g}x goal)")
    if tiny:
        report("NOTE: tiny random model: plumbing cost only, not Chatterbox's speed")
    if random:
        report(f"NOTE: random weights of the real architecture, every chunk {CAP} tokens")
    return {
        "device": device,
        "variant": variant,
        "tiny_model": tiny,
        "random_weights": random,
        "batch": batch,
        "songbatch_batched": _numbers(batched),
        "chunks": chunks,
        "baseline": _numbers(baseline),
        "songbatch": _numbers(ours),
        "speedup": speedup,
        "goal": GOAL,
    }


def _what(tiny: bool, model: str) -> str:
    return "TINY RANDOM MODEL (CPU stand-in)" if tiny else f"weights {model}"


def _numbers(result: PathResult) -> dict[str, float]:
    return {
        "wall_s": result.wall_s,
        "audio_s": result.audio_s,
        "rtf": result.rtf,
        "audio_per_device_s": result.audio_per_device_s,
        "renders": result.renders,
    }


def _spec(model: str, variant: str, random_weights: bool) -> EngineSpec:
    params: dict[str, Any] = {"variant": variant}
    if random_weights:
        # Random weights never stop: every render is CAP tokens, whatever the text, and QA
        # would reject most of them.
        params.update(qa_min_ratio=0.0, qa_max_ratio=100.0, max_new_tokens=CAP)
    return EngineSpec(kind="speech", engine="chatterbox", model=model, params=params)


def _engine(
    spec: EngineSpec, device: str, folder: Path, tiny: bool, random: bool
) -> cb.ChatterboxEngine:
    """Real weights; the tiny test model; or (`random`) the real architecture with random
    weights, for a GPU that cannot fetch weights. The last two cap every render at CAP tokens
    in both loops (the library's, through `cap_speech_tokens`, and songbatch's batched one)."""
    if not (tiny or random):
        return cb.load(spec, device)
    sys.path.insert(0, str(TINY_HELPERS))
    import tiny_chatterbox  # type: ignore[import-not-found]  # tests/chatterbox_engine

    built = tiny_chatterbox.build_tiny_model(folder, device=device, full_size=random, tokens=CAP)
    return cb.ChatterboxEngine.from_model(built, spec, device)


def _voice(folder: Path, given: Path | None) -> Path:
    """The given reference, or 6 s of a synthetic voiced tone (Turbo wants more than 5 s)."""
    if given is not None:
        return given
    rate = 24000
    t = np.arange(6 * rate) / rate
    wave = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((140, 280, 420)))
    path = folder / "voices" / ("0" * 64)
    path.parent.mkdir()
    sf.write(str(path), (0.2 * wave / np.abs(wave).max()).astype(np.float32), rate, format="WAV")
    return path


def _warm_up(engine: cb.ChatterboxEngine, reference: Path, seed: int) -> None:
    """One untimed call (voice analysis + generate): lazy CUDA init, kernels, allocator pools.
    It does not fill the engine's voice cache: songbatch's timing includes its one prepare."""
    cb.seed_everything(seed)
    with cb.quiet():
        engine.model.generate("Warm up.", audio_prompt_path=str(reference))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _baseline(
    model: Any, texts: list[str], reference: Path, folder: Path, seed: int, device: str
) -> PathResult:
    audio_s = 0.0
    started = time.perf_counter()
    for index, text in enumerate(texts):
        cb.seed_everything(seed + index)
        with cb.quiet():
            wav = model.generate(text, audio_prompt_path=str(reference))
        audio = wav.reshape(-1).float().cpu().numpy()
        result = RenderResult(np.clip(audio, -1, 1), model.sr)
        write_chunk(folder / f"base-{index}.flac", result, key=f"base-{index}")
        audio_s += result.duration_s
    _sync(device)
    return PathResult("baseline", time.perf_counter() - started, audio_s, len(texts))


def _songbatch(
    engine: cb.ChatterboxEngine,
    texts: list[str],
    reference: Path,
    folder: Path,
    seed: int,
    device: str,
    batch: int = 1,
) -> PathResult:
    """Render `batch` chunks per engine call on this thread while a writer thread encodes the
    previous ones, as a worker does."""
    pending: queue.Queue[tuple[int, RenderResult] | None] = queue.Queue(maxsize=2)
    writer = threading.Thread(target=_write_loop, args=(pending, folder), daemon=True)
    audio_s = 0.0
    renders = 0
    started = time.perf_counter()
    writer.start()
    requests = [
        RenderRequest(
            key=f"ours-{index}",
            kind="speech",
            text=text,
            seed=seed + index,
            params={"language": "en"},
            voice_path=str(reference),
        )
        for index, text in enumerate(texts)
    ]
    for first in range(0, len(requests), batch):
        results = engine.render(requests[first : first + batch], lambda: None)
        for index, result in enumerate(results, start=first):
            if isinstance(result, EngineError):
                raise result
            audio_s += result.duration_s
            renders += int(result.info.get("qa_renders", 1))
            pending.put((index, result))
    pending.put(None)
    writer.join()
    _sync(device)
    name = "songbatch" if batch == 1 else f"batch {batch}"
    return PathResult(name, time.perf_counter() - started, audio_s, renders)


def _write_loop(pending: queue.Queue[tuple[int, RenderResult] | None], folder: Path) -> None:
    while (item := pending.get()) is not None:
        index, result = item
        write_chunk(folder / f"ours-{index}.flac", result, key=f"ours-{index}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--model", default="ResembleAI/chatterbox")
    parser.add_argument("--variant", default="english")
    parser.add_argument("--voice", type=Path)
    parser.add_argument("--tiny", action="store_true", help="tiny random model even on CUDA")
    parser.add_argument(
        "--random", action="store_true", help="the real architecture with random weights"
    )
    parser.add_argument("--batch", type=int, default=8, help="chunks per call, batched path")
    args = parser.parse_args()
    chatterbox_bench(
        args.device,
        args.chunks,
        model=args.model,
        variant=args.variant,
        voice=args.voice,
        tiny=True if args.tiny else None,
        random=args.random,
        batch=args.batch,
    )


if __name__ == "__main__":
    main()
