"""Regenerate the example manifests' binary assets (voice clip, covers).

Run once by hand: `python manifests/make_example_assets.py`. The outputs are committed; tests
use the committed files and never run this script.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import soundfile

HERE = Path(__file__).resolve().parent


def voice_clip(path: Path, seconds: float = 1.0, rate: int = 24_000) -> None:
    """A 1 s vowel-like tone (150 Hz with harmonics, a little noise), 16-bit mono WAV."""
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    rng = np.random.default_rng(0)
    wave = wave + 0.05 * rng.standard_normal(t.size)
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    audio = (0.3 * wave * envelope / np.abs(wave).max()).astype(np.float32)
    soundfile.write(path, audio, rate, subtype="PCM_16")


def png(
    path: Path, top: tuple[int, int, int], bottom: tuple[int, int, int], size: int = 300
) -> None:
    """A vertical gradient with a centred disc, written as PNG with only the standard library."""
    y, x = np.mgrid[0:size, 0:size]
    mix = (y / (size - 1))[..., None]
    image = (1 - mix) * np.array(top) + mix * np.array(bottom)
    disc = (x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 4) ** 2
    image[disc] = 255 - image[disc]
    pixels = image.astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    voice_clip(HERE / "example-book" / "voice.wav")
    png(HERE / "example-book" / "cover.png", (30, 60, 110), (200, 150, 90))
    png(HERE / "example-album" / "cover.png", (90, 20, 80), (20, 160, 150))


if __name__ == "__main__":
    main()
