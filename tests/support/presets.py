"""A valid random voice preset, as the .npz a client uploads."""

from __future__ import annotations

import io

import numpy as np


def preset_npz(seed: int = 0, frames: int = 60) -> bytes:
    """Three prompt arrays of `frames` coarse/fine frames (and 2/3 as many semantic tokens)."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        semantic_prompt=rng.integers(0, 10_000, frames * 2 // 3),
        coarse_prompt=rng.integers(0, 1024, (2, frames)),
        fine_prompt=rng.integers(0, 1024, (8, frames)),
    )
    return buffer.getvalue()
