"""How a preset's histories are trimmed for the coarse stage (bark 0.1.5 generation.py,
generate_coarse): with r = 2 * 75 / 49.9 coarse ids per semantic token, n semantic tokens =
min(floor(630 / r) = 209, the even part of the semantic prompt, what the coarse prompt covers:
floor(ids / r)), n coarse ids = round(n r), then the last frame (2 ids) dropped. Each case
below makes a different bound the binding one; the numbers are worked by hand from the
original's formula."""

from __future__ import annotations

import numpy as np
import pytest

from bark_core.constants import SEMANTIC_VOCAB_SIZE
from bark_core.stages import coarse_histories


@pytest.mark.parametrize(
    ("n_semantic", "n_frames", "kept_semantic"),
    [
        (101, 152, 100),  # odd prompt: its even part (100) binds; 304 coarse ids cover 101
        (100, 148, 98),  # short coarse prompt: 296 ids cover floor(296 / r) = 98 tokens
        (400, 600, 209),  # long prompts: the 630-id history window binds
    ],
)
def test_the_binding_bound_sets_both_histories(n_semantic: int, n_frames: int, kept_semantic: int) -> None:
    rng = np.random.default_rng(n_semantic)
    semantic = rng.integers(0, 10_000, n_semantic)
    coarse = rng.integers(0, 1024, (2, n_frames))
    sem_hist, coarse_hist = coarse_histories(semantic, coarse)
    n_coarse = round(kept_semantic * 2 * 75 / 49.9)
    assert len(sem_hist) == kept_semantic and len(coarse_hist) == n_coarse - 2
    assert sem_hist.dtype == coarse_hist.dtype == np.int64  # token ids, as the stages index them
    np.testing.assert_array_equal(sem_hist, semantic[-kept_semantic:])
    # interleaved [c0_t, c1_t + 1024, ...] past the semantic ids, ending a frame early
    flat = np.stack([coarse[0], coarse[1] + 1024]).ravel("F") + SEMANTIC_VOCAB_SIZE
    np.testing.assert_array_equal(coarse_hist, flat[-n_coarse:-2])
