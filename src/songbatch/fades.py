"""Fade-in and fade-out of an album track, applied block by block as its master is streamed.

A fade is a gain on the first (or last) frames of the master; every block outside them passes
through untouched (the very same samples), so memory stays one block and a track's middle is
bit-identical with and without fades.

The curve is **equal power** (a quarter sine: the fade-in's gain is sin(pi/2 x p), the
fade-out's cos(pi/2 x p), p going 0 -> 1 across the fade), not linear. A track's `crossfade`
is this track's fade-out and the next one's fade-in of the same length, meant to overlap in a
player that crossfades; over that overlap sin^2 + cos^2 = 1, so two uncorrelated pieces of
music keep their combined power (a linear pair dips 3 dB at the midpoint). For a plain fade to
or from silence either curve is usual, and this one too runs from 0 to exactly 1.
Each gain is taken at the middle of its frame ((n + 0.5) / F), so a fade-out is exactly the
fade-in played backwards and the two gains of any overlap frame square-sum to 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt


def fade_frames(fade_ms: int, sample_rate: int, total: int) -> int:
    """Frames of a fade of `fade_ms` at `sample_rate`, never more than the track's `total`."""
    return max(0, min(total, round(fade_ms * sample_rate / 1000)))


def fade_in_gain(position: npt.NDArray[np.int64], frames: int) -> npt.NDArray[np.float64]:
    """Gain of frames `position` (0-based from the start) in a fade-in of `frames` frames;
    1 past it."""
    if frames <= 0:
        return np.ones(position.shape, dtype=np.float64)
    progress = np.clip((position + 0.5) / frames, 0.0, 1.0)
    gain: npt.NDArray[np.float64] = np.sin(0.5 * np.pi * progress)
    return gain


def fade_out_gain(
    position: npt.NDArray[np.int64], frames: int, total: int
) -> npt.NDArray[np.float64]:
    """Gain of frames `position` in a fade-out of the last `frames` of `total` frames: the
    fade-in mirrored (cos of the same progress from the end)."""
    return fade_in_gain(total - 1 - position, frames)


def apply_fades(
    blocks: Iterable[npt.NDArray[np.float32]], *, total: int, fade_in: int, fade_out: int
) -> Iterator[npt.NDArray[np.float32]]:
    """`blocks` ((frames, channels), in order, `total` frames together) with a fade-in over
    the first `fade_in` frames and a fade-out over the last `fade_out`; where a short track's
    two fades overlap the gains multiply. Blocks outside both pass through as they are."""
    start = 0
    out_from = total - fade_out
    for block in blocks:
        stop = start + block.shape[0]
        if start < fade_in or stop > out_from:
            position = np.arange(start, stop, dtype=np.int64)
            gain = fade_in_gain(position, fade_in) * fade_out_gain(position, fade_out, total)
            block = (block * gain[:, None]).astype(np.float32)
        yield block
        start = stop
