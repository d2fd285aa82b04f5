"""A tiny, randomly initialised MusicGen saved like a real checkpoint.

`build_tiny_musicgen(folder)` writes a model and processor that both
`MusicgenForConditionalGeneration.from_pretrained(folder)` and
`AutoProcessor.from_pretrained(folder)` load offline, so tests exercise the same code path as
facebook/musicgen-* weights. The shapes that matter to the engine are the real ones: 32 kHz
audio, 4 codebooks of 2048 codes at 50 Hz, a T5 text encoder. Everything else is shrunk so it
builds in about a second and generates quickly on a CPU. Its audio is noise-like (random
weights): only lengths, shapes and determinism mean anything.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    EncodecConfig,
    EncodecFeatureExtractor,
    GenerationConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenProcessor,
    T5Config,
    T5Tokenizer,
)

SAMPLE_RATE = 32000
NUM_CODEBOOKS = 4
CODEBOOK_SIZE = 2048
# The decoder's pad/start token sits just past the codebook, as in the real checkpoints.
PAD_TOKEN = CODEBOOK_SIZE

# A few whole words plus single letters, so any lowercase prompt tokenises without <unk> storms.
_WORDS = ("calm", "piano", "drums", "ambient", "rock", "jazz", "slow", "fast", "guitar", "song")


def tiny_tokenizer() -> T5Tokenizer:
    """A T5 Unigram tokenizer built from an in-memory vocabulary (no sentencepiece file)."""
    vocab: list[tuple[str, float]] = [
        ("<pad>", 0.0),
        ("</s>", 0.0),
        ("<unk>", 0.0),
        ("\u2581", -2.0),
    ]
    vocab += [(f"\u2581{word}", -3.0) for word in _WORDS]
    vocab += [(letter, -5.0) for letter in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _config(vocab_size: int, channels: int) -> MusicgenConfig:
    text = T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    # 640-sample hop (8*5*4*4) at 32 kHz = 50 Hz; 2.2 kbps = 4 codebooks of 11 bits at 50 Hz.
    audio = EncodecConfig(
        sampling_rate=SAMPLE_RATE,
        upsampling_ratios=[8, 5, 4, 4],
        target_bandwidths=[2.2],
        codebook_size=CODEBOOK_SIZE,
        hidden_size=16,
        codebook_dim=16,
        num_filters=4,
        num_residual_layers=1,
        num_lstm_layers=1,
        normalize=False,
        chunk_length_s=None,
        overlap=None,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=CODEBOOK_SIZE,
        # Stereo checkpoints interleave left and right codes: twice the codebooks.
        num_codebooks=NUM_CODEBOOKS * channels,
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=2048,
        pad_token_id=PAD_TOKEN,
        bos_token_id=PAD_TOKEN,
        audio_channels=channels,
    )
    return MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict()
    )


def musicgen_generation_config() -> GenerationConfig:
    """The generation defaults facebook/musicgen-small ships."""
    return GenerationConfig(
        decoder_start_token_id=PAD_TOKEN,
        pad_token_id=PAD_TOKEN,
        bos_token_id=PAD_TOKEN,
        do_sample=True,
        top_k=250,
        guidance_scale=3.0,
        max_length=1500,
    )


def randomise_codebooks(model: MusicgenForConditionalGeneration) -> None:
    """EnCodec initialises its codebooks to zeros (real ones are learned): every code would then
    decode to the same audio and seeds could not be told apart by listening to the output."""
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)


def build_tiny_musicgen(folder: Path, *, stereo: bool = False) -> Path:
    """Write the tiny model and its processor into `folder` (created) and return it; `stereo`
    makes it like facebook/musicgen-stereo-* (8 codebooks, 2 audio channels)."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)  # the same random weights every time
    model = MusicgenForConditionalGeneration(_config(len(tokenizer), 2 if stereo else 1))
    randomise_codebooks(model)
    model.generation_config = musicgen_generation_config()
    model.save_pretrained(folder)
    extractor = EncodecFeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0
    )
    MusicgenProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
