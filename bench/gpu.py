"""GPU engines: one track at a time against batched, measured side by side in one run.

musicgen: N equal tracks of D seconds rendered one per call (batch 1), then in one call that the
engine batches (4, then 8): real-time factor (device seconds per audio second), audio seconds per
device second, generate() calls and peak memory (torch.cuda.max_memory_allocated on CUDA, the
process's ru_maxrss on a CPU), and the batched/sequential throughput against the 3x goal.

Model: --model (a hub id or folder; `random-small` = musicgen-small's architecture with random
weights; `tiny` = the test suite's tiny random MusicGen). By default facebook/musicgen-small if it
is in the Hugging Face cache, else random-small on CUDA (same compute per step, which is what is
measured) and tiny on a CPU. Random weights make noise, but cost the same as real ones: MusicGen
always generates the full length (there is no end token).

    python bench/gpu.py [--section musicgen] [--device cuda|cpu] [--tracks N] [--seconds D]
                        [--batches 4,8] [--model facebook/musicgen-small|random-small|tiny|PATH]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache
from transformers import (
    EncodecConfig,
    EncodecFeatureExtractor,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenProcessor,
    ProcessorMixin,
    T5Config,
)
from transformers.utils import logging as hf_logging

from songbatch.engines import musicgen
from songbatch.engines.base import AUTO_BATCH_CEILING, EngineSpec, RenderRequest
from songbatch.engines.musicgen import (
    MusicGenEngine,
    auto_batch_limit,
    kv_cache_bytes,
    track_bytes,
)
from songbatch.errors import EngineUnavailable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.tiny_musicgen import (
    SAMPLE_RATE,
    build_tiny_musicgen,
    musicgen_generation_config,
    randomise_codebooks,
    tiny_tokenizer,
)

MusicGen = MusicgenForConditionalGeneration
GOAL_RATIO = 3.0  # batched throughput over one-at-a-time
PROMPTS = (
    "calm ambient piano",
    "fast rock drums and guitar",
    "slow jazz with brushed drums",
    "bright acoustic guitar song",
)


@dataclass(frozen=True)
class Measurement:
    mode: str
    batch: int
    calls: int
    wall_s: float
    audio_s: float
    peak_mib: float

    @property
    def rtf(self) -> float:
        return self.wall_s / self.audio_s

    @property
    def throughput(self) -> float:
        return self.audio_s / self.wall_s


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None)
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None, help="default: 10 CUDA, 1 CPU")
    parser.add_argument("--batches", default="4,8", help="batch sizes to compare, e.g. 4,8")
    parser.add_argument("--model", default=None, help="hub id, folder, random-small or tiny")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (tiny model: 1)")
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device == "cuda"
    args.seconds = args.seconds or (10.0 if cuda else 1.0)
    args.batch_sizes = [int(size) for size in args.batches.split(",") if size.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: use --device cpu")
        return 2
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # load-time notes
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    sections = list(SECTIONS) if args.section == "all" else [args.section]
    for name in sections:
        SECTIONS[name](args)
    return 0


# ---------------------------------------------------------------------------------------------
# Shared measuring


def _peak_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _print_table(rows: list[Measurement], device: str) -> None:
    memory = "peak alloc MiB" if device == "cuda" else "process maxrss MiB"
    print(
        f"{'mode':<11} {'batch':>5} {'calls':>5} {'wall s':>8} {'RTF':>7} {'audio s/s':>9} {memory}"
    )
    for row in rows:
        print(
            f"{row.mode:<11} {row.batch:>5} {row.calls:>5} {row.wall_s:>8.2f} {row.rtf:>7.3f}"
            f" {row.throughput:>9.2f} {row.peak_mib:.0f}"
        )
    base = rows[0]
    for row in rows[1:]:
        ratio = row.throughput / base.throughput
        verdict = "meets" if ratio >= GOAL_RATIO else "below"
        print(
            f"batch {row.batch} / sequential: {ratio:.2f}x throughput"
            f" ({verdict} the {GOAL_RATIO:g}x goal; ratio to goal {ratio / GOAL_RATIO:.2f})"
        )


# ---------------------------------------------------------------------------------------------
# musicgen


def bench_musicgen(args: argparse.Namespace) -> None:
    model, processor, description = _musicgen_model(args)
    threads = args.threads or (1 if description.startswith("tiny") else None)
    if args.device == "cpu" and threads:
        # The tiny model is all thread-sync overhead: one thread is faster and steadier.
        torch.set_num_threads(threads)
    print(
        f"musicgen: {description}; {model.device}, {model.dtype},"
        f" {torch.get_num_threads()} CPU threads"
    )
    print(f"{args.tracks} tracks x {args.seconds:g} s, one at a time vs batched")
    spec = EngineSpec(kind="music", engine="musicgen", model=description, batch_size=1)

    def engine(batch: int) -> MusicGenEngine:
        return MusicGenEngine(replace(spec, batch_size=batch), model, processor)

    tracks = [
        RenderRequest(
            key=f"bench-{i}",
            kind="music",
            text=PROMPTS[i % len(PROMPTS)],
            seed=i,
            duration_s=args.seconds,
        )
        for i in range(args.tracks)
    ]
    _warm_up(engine(max(args.batch_sizes)), tracks)
    rows = [_measure("sequential", engine(1), tracks, args.device, one_at_a_time=True)]
    rows += [_measure("batched", engine(b), tracks, args.device) for b in args.batch_sizes]
    _print_table(rows, args.device)
    _print_auto_batch(model, args.device)


def _print_auto_batch(model: MusicGen, device: str) -> None:
    """What `batch_size: auto` would pick here, and the memory model behind it (30 s windows);
    compare its per-track figure with the peak growth per track in the table above."""
    dtype_bytes = torch.finfo(model.dtype).bits // 8
    per_track = track_bytes(model.decoder.config, model.audio_encoder.config, dtype_bytes)
    kv = kv_cache_bytes(model.decoder.config, model.audio_encoder.config, dtype_bytes)
    limit = auto_batch_limit(model, model.device, AUTO_BATCH_CEILING)
    free = (
        f", {torch.cuda.mem_get_info(model.device)[0] / 2**30:.1f} GiB free"
        if device == "cuda"
        else ""
    )
    print(
        f"batch_size auto: {limit} (model: {per_track / 2**20:.0f} MiB per 30 s track,"
        f" {kv / 2**20:.0f} MiB of it KV cache{free})"
    )


def _warm_up(engine: MusicGenEngine, tracks: list[RenderRequest]) -> None:
    """CUDA context, kernels and allocator pools; not measured."""
    short = [replace(track, duration_s=0.5) for track in tracks[: engine.spec.batch_size]]
    engine.render(short, lambda: None)
    engine.render(short[:1], lambda: None)


def _measure(
    mode: str,
    engine: MusicGenEngine,
    tracks: list[RenderRequest],
    device: str,
    *,
    one_at_a_time: bool = False,
) -> Measurement:
    _reset_peak(device)
    started = time.perf_counter()
    if one_at_a_time:
        results = [result for track in tracks for result in engine.render([track], lambda: None)]
    else:
        results = list(engine.render(tracks, lambda: None))
    wall = time.perf_counter() - started
    failed = [str(result) for result in results if isinstance(result, Exception)]
    if failed:
        raise SystemExit(f"musicgen {mode} batch {engine.spec.batch_size} failed: {failed[0]}")
    audio_s = sum(track.duration_s or 0.0 for track in tracks)
    return Measurement(
        mode, engine.spec.batch_size, engine.generate_calls, wall, audio_s, _peak_mib(device)
    )


def _musicgen_model(
    args: argparse.Namespace,
) -> tuple[MusicGen, ProcessorMixin, str]:
    """(model, processor, description) for --model, or the default fallback chain."""
    name = args.model
    if name is None:
        name = "facebook/musicgen-small" if _cached("facebook/musicgen-small") else None
        if name is None:
            name = "random-small" if args.device == "cuda" else "tiny"
            print(f"facebook/musicgen-small is not in the Hugging Face cache: using {name}")
    if name == "random-small":
        return (*_random_small(args.device), "random-small (musicgen-small architecture)")
    if name == "tiny":
        name = str(build_tiny_musicgen(Path(tempfile.mkdtemp(prefix="tiny-musicgen-"))))
        label = "tiny random MusicGen (test model)"
    else:
        label = name
    spec = EngineSpec(kind="music", engine="musicgen", model=name)
    try:
        loaded = musicgen.load(spec, args.device)
    except EngineUnavailable as exc:
        raise SystemExit(str(exc)) from exc
    return loaded.model, loaded.processor, label


def _cached(repo: str) -> bool:
    return isinstance(try_to_load_from_cache(repo, "model.safetensors"), str)


def _random_small(device: str) -> tuple[MusicGen, ProcessorMixin]:
    """musicgen-small's architecture with random weights, built on the device (no download)."""
    dtype = torch.float16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device("cuda:0" if device == "cuda" else "cpu"):
        model = MusicgenForConditionalGeneration(_small_config())
    randomise_codebooks(model)
    model = model.to(dtype).train(False)  # type: ignore[arg-type]  # typed for nn.Module
    model.generation_config = musicgen_generation_config()
    extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE)
    processor = MusicgenProcessor(  # type: ignore[no-untyped-call]
        feature_extractor=extractor, tokenizer=tiny_tokenizer()
    )
    return model, processor


def _small_config() -> MusicgenConfig:
    """facebook/musicgen-small: its cached config.json if there is one, else the same values
    (t5-base text encoder, EnCodec 32 kHz as transformers' conversion script sets it, and the
    decoder defaults, which are musicgen-small's)."""
    try:
        return MusicgenConfig.from_pretrained("facebook/musicgen-small", local_files_only=True)
    except OSError:
        pass
    text = T5Config(d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_heads=12)
    codec = EncodecConfig(
        sampling_rate=32000,
        upsampling_ratios=[8, 5, 4, 4],
        target_bandwidths=[2.2],
        num_filters=64,
        codebook_size=2048,
        use_causal_conv=False,
        normalize=False,
        use_conv_shortcut=False,
    )
    decoder = MusicgenDecoderConfig(num_codebooks=4, pad_token_id=2048, bos_token_id=2048)
    return MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict()
    )


# ---------------------------------------------------------------------------------------------
# chatterbox: its package pins other versions, so it lives in its own environment and script.


def bench_chatterbox(args: argparse.Namespace) -> None:
    import importlib.util

    if importlib.util.find_spec("chatterbox") is None:
        print("chatterbox: not installed in this environment; run it in its own:")
        print("  bash .ci/chatterbox-env && .venv-chatterbox/bin/python bench/gpu_chatterbox.py")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_chatterbox import chatterbox_bench

    chatterbox_bench(args.device or "cpu", chunks=args.tracks)


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "musicgen": bench_musicgen,
    "chatterbox": bench_chatterbox,
}


if __name__ == "__main__":
    sys.exit(main())
