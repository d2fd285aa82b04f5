"""A tiny random Chatterbox (English variant) built from the real package's classes.

Real `T3`, `S3Gen` (`S3Token2Wav`), `VoiceEncoder`, `EnTokenizer` and `ChatterboxTTS`, with random
weights: every code path our engine drives is the library's own, only the weights are fake. T3
gets a one-layer Llama (hidden size 1024 because the library's Perceiver is fixed at that size);
S3Gen and the voice encoder are full size, as the library hard-codes their shapes. Random weights
never sample the stop token, so `cap_speech_tokens` bounds each call's token loop.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from chatterbox.models.s3gen import S3Gen
from chatterbox.models.t3 import T3
from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
from chatterbox.models.t3.modules.t3_config import T3Config
from chatterbox.models.tokenizers import EnTokenizer, MTLTokenizer
from chatterbox.models.voice_encoder import VoiceEncoder
from chatterbox.mtl_tts import ChatterboxMultilingualTTS
from chatterbox.tts import ChatterboxTTS
from chatterbox.tts_turbo import ChatterboxTurboTTS
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from songbatch.engines import chatterbox_batch as batch

TINY_LLAMA = "songbatch_tiny_llama"
# Default speech tokens per call: 25 tokens are one second of audio.
DEFAULT_TOKENS = 12


def _register_tiny_llama() -> None:
    """One Llama layer; same fields as the library's 520M config otherwise."""
    config = dict(LLAMA_CONFIGS["Llama_520M"])
    config.update(num_hidden_layers=1, intermediate_size=256)
    LLAMA_CONFIGS[TINY_LLAMA] = config


def write_tokenizer(path: Path) -> Path:
    """A character-level WordLevel tokenizer with the ids the model expects: [STOP]=0,
    [START]=255, everything below the English vocabulary size of 704."""
    vocab = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2, "[START]": 255}
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-"
    vocab.update({c: 3 + i for i, c in enumerate(chars)})
    # Fill the ids in between: tokenizers warns about (and may mangle) a vocabulary with holes.
    used = set(vocab.values())
    vocab.update({f"[UNUSED{i}]": i for i in range(256) if i not in used})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.add_special_tokens(["[STOP]", "[UNK]", "[SPACE]", "[START]"])
    tokenizer.save(str(path))
    json.loads(path.read_text())  # fail here, not in the model, if it did not serialise
    return path


def cap_speech_tokens(model: Any, caps: Callable[[], int]) -> None:
    """Each token loop run for `model` samples at most `caps()` tokens: the library's
    (`model.t3.inference`, wrapped) and songbatch's batched one (`sample_speech_tokens`, which
    reads the cap this sets for the model's T3)."""
    inner = model.t3.inference

    @functools.wraps(inner)
    def capped(*args: Any, **kwargs: Any) -> Any:
        kwargs["max_new_tokens"] = min(int(kwargs.get("max_new_tokens") or 1000), caps())
        return inner(*args, **kwargs)

    model.t3.inference = capped
    _BATCH_CAPS[model.t3] = caps


# The batched loop's caps, per T3 module; a T3 without one runs uncapped.
_BATCH_CAPS: weakref.WeakKeyDictionary[Any, Callable[[], int]] = weakref.WeakKeyDictionary()
_sample_speech_tokens = batch.sample_speech_tokens


@functools.wraps(_sample_speech_tokens)
def _capped_sample(t3: Any, rows: Any, sampling: Any, *, max_new_tokens: int, **kw: Any) -> Any:
    caps = _BATCH_CAPS.get(t3)
    limit = max_new_tokens if caps is None else min(max_new_tokens, caps())
    return _sample_speech_tokens(t3, rows, sampling, max_new_tokens=limit, **kw)


batch.sample_speech_tokens = _capped_sample


def token_schedule(first: list[int], then: int = DEFAULT_TOKENS) -> Callable[[], int]:
    """Caps for successive calls: the `first` ones in order, then `then` for ever."""
    pending: Iterator[int] = iter(first)
    return lambda: next(pending, then)


def build_tiny_model(
    folder: Path,
    *,
    seed: int = 0,
    device: str = "cpu",
    full_size: bool = False,
    tokens: int = DEFAULT_TOKENS,
) -> ChatterboxTTS:
    """The real ChatterboxTTS around tiny random parts, in eval mode, with no built-in voice,
    each `T3.inference` call capped at `tokens`; `full_size`: the library's own 520M Llama
    instead (benchmarks on a GPU without weights)."""
    _register_tiny_llama()
    torch.manual_seed(seed)
    hp = T3Config.english_only()
    if not full_size:
        hp.llama_config_name = TINY_LLAMA
    t3 = T3(hp).to(device).eval()
    s3gen = S3Gen().to(device).eval()
    ve = VoiceEncoder().to(device).eval()
    tokenizer = EnTokenizer(str(write_tokenizer(folder / "tokenizer.json")))
    model = ChatterboxTTS(t3, s3gen, ve, tokenizer, device=device)
    cap_speech_tokens(model, lambda: tokens)
    return model


def write_voice(path: Path, *, seconds: float = 1.5, sample_rate: int = 24000) -> Path:
    """A voice reference: a voiced-sounding tone stack with noise, as a WAV (the file name may
    have no extension, like `<state>/voices/<sha256>`; soundfile is told the format)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(7)
    wave = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((140, 280, 420, 560)))
    wave = 0.2 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(t.size)
    sf.write(str(path), wave.astype(np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return path


def save_checkpoint(model: ChatterboxTTS, folder: Path, voice: Path) -> Path:
    """The model's files in the layout the library's from_local (and from_pretrained, through
    the Hugging Face cache) reads, with `voice` as the checkpoint's built-in voice."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.ve.state_dict(), folder / "ve.safetensors")
    # After a first generate T3 also holds `patched_model`, which shares its tensors: a fresh
    # T3() has no such keys, so the checkpoint must not either.
    t3_state = {k: v for k, v in model.t3.state_dict().items() if not k.startswith("patched_")}
    save_file(t3_state, folder / "t3_cfg.safetensors")
    # from_local loads S3Gen with strict=False: a partial file keeps disk use small.
    s3gen_part = {k: v for k, v in model.s3gen.state_dict().items() if k.startswith("mel2wav.f0")}
    save_file({k: v.contiguous() for k, v in s3gen_part.items()}, folder / "s3gen.safetensors")
    model.tokenizer.tokenizer.save(str(folder / "tokenizer.json"))
    saved_conds = model.conds
    model.prepare_conditionals(str(voice))
    model.conds.save(folder / "conds.pt")
    model.conds = saved_conds
    return folder


def build_tiny_turbo(*, seed: int = 0) -> ChatterboxTurboTTS:
    """The real ChatterboxTurboTTS: T3 with Turbo's settings (as its from_local sets them) on a
    one-layer GPT-2, S3Gen's meanflow decoder, a character tokenizer; each call capped at
    DEFAULT_TOKENS."""
    LLAMA_CONFIGS["songbatch_tiny_gpt2"] = {**LLAMA_CONFIGS["GPT2_medium"], "n_layer": 1}
    torch.manual_seed(seed)
    hp = T3Config(text_tokens_dict_size=50276)
    hp.llama_config_name = "songbatch_tiny_gpt2"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    t3 = T3(hp)
    del t3.tfmr.wte  # as from_local does: T3 embeds text itself
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?'\"-"
    vocab = {"<unk>": 0, "<|endoftext|>": 1, **{c: 2 + i for i, c in enumerate(chars)}}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words, unk_token="<unk>", eos_token="<|endoftext|>"
    )
    tokenizer.pad_token = tokenizer.eos_token
    model = ChatterboxTurboTTS(
        t3.eval(), S3Gen(meanflow=True).eval(), VoiceEncoder().eval(), tokenizer, "cpu"
    )
    inner = model.t3.inference_turbo

    @functools.wraps(inner)
    def capped(*args: Any, **kwargs: Any) -> Any:
        return inner(*args, **{**kwargs, "max_gen_len": DEFAULT_TOKENS})

    model.t3.inference_turbo = capped
    return model


# The Multilingual loop's alignment analyser watches attention heads in layers 9, 12 and 13.
MULTILINGUAL_LAYERS = 14


def build_tiny_multilingual(folder: Path, *, seed: int = 0) -> ChatterboxMultilingualTTS:
    """The real ChatterboxMultilingualTTS on a 14-layer narrow Llama and a character tokenizer
    with language tags; each call capped at DEFAULT_TOKENS."""
    name = "songbatch_tiny_llama_mtl"
    config = dict(LLAMA_CONFIGS["Llama_520M"])
    config.update(num_hidden_layers=MULTILINGUAL_LAYERS, intermediate_size=256)
    LLAMA_CONFIGS[name] = config
    torch.manual_seed(seed)
    hp = T3Config.multilingual()
    hp.llama_config_name = name
    vocab = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2, "[START]": 255}
    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-"
    vocab.update({c: 3 + i for i, c in enumerate(chars)})
    vocab.update({f"[{lang}]": 300 + i for i, lang in enumerate(("en", "fr", "de", "es"))})
    used = set(vocab.values())
    vocab.update({f"[UNUSED{i}]": i for i in range(320) if i not in used})
    words = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Split(Regex(r"\[[a-z]+\]|."), behavior="isolated")
    words.add_special_tokens(["[STOP]", "[UNK]", "[SPACE]", "[START]"])
    words.save(str(folder / "mtl_tokenizer.json"))
    model = ChatterboxMultilingualTTS(
        T3(hp).eval(),
        S3Gen().eval(),
        VoiceEncoder().eval(),
        MTLTokenizer(str(folder / "mtl_tokenizer.json")),
        "cpu",
    )
    cap_speech_tokens(model, lambda: DEFAULT_TOKENS)
    return model
