"""Joining a request's chunks: a short pause between them and no click at the seams.

Each chunk's decoded audio fades in and out over a few milliseconds (a half-cosine ramp that
starts and ends at exactly 0), so consecutive chunks meet at silence whatever their last and
first samples were (the random demo checkpoint has a DC offset of ~0.14: a raw join is a
step). The pause is prepended to every chunk after the first, so a stream can send each
chunk as it is: the silence travels with the chunk it introduces, and the first audio is not
delayed by it.
"""

from __future__ import annotations

import numpy as np

from .constants import SAMPLE_RATE

FADE_S = 0.005  # 120 samples: short enough to be inaudible as a fade, long enough not to click


def _ramp(n: int) -> np.ndarray:
    """n gains rising from exactly 0 to just below 1 along a half cosine."""
    return (0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)).astype(np.float32)


def fade_edges(audio: np.ndarray, fade_s: float = FADE_S) -> np.ndarray:
    """A copy of `audio` faded in over its first and out over its last `fade_s` seconds
    (at most half of it each way); the first and the last sample are 0."""
    out = np.array(audio, dtype=np.float32, copy=True)
    n = min(round(fade_s * SAMPLE_RATE), len(out) // 2)
    if n > 0:
        ramp = _ramp(n)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out


def pause_samples(pause_s: float) -> int:
    return round(pause_s * SAMPLE_RATE)


def join_chunk(audio: np.ndarray, chunk_index: int, pause_s: float) -> np.ndarray:
    """A chunk's audio as it goes out: faded at both ends, and after `pause_s` of silence
    unless it is the request's first chunk."""
    faded = fade_edges(audio)
    if chunk_index == 0 or pause_s <= 0.0:
        return faded
    return np.concatenate([np.zeros(pause_samples(pause_s), dtype=np.float32), faded])
