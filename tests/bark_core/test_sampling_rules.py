"""The sampling rules of bark 0.1.5 that the stages must keep: the duration cap, EOS by
probability, temperature, and the batched sampler against the one-row original."""

from __future__ import annotations

import numpy as np
import pytest

from bark_core.constants import MAX_SEMANTIC_TOKENS, semantic_token_cap
from bark_core.params import GenerationParams


def test_semantic_token_cap_is_the_first_count_over_the_duration() -> None:
    assert semantic_token_cap(None) == MAX_SEMANTIC_TOKENS
    assert semantic_token_cap(0.01) == 1  # the original always keeps its first token
    assert semantic_token_cap(0.25) == 13  # 12 tokens are 0.2405 s, 13 are 0.2605 s
    assert semantic_token_cap(1.0) == 50
    # 50 * (1 / 49.9) summed is 1.0020040080160326, over 50 / 49.9 = ...0322 by rounding: the
    # original stops at 50 there, where comparing n / 49.9 would go on to 51
    assert semantic_token_cap(50 / 49.9) == 50
    assert semantic_token_cap(1e4) == MAX_SEMANTIC_TOKENS


@pytest.mark.xfail(
    strict=True,
    reason="bark_core/params.py (another owner) still rounds d * 49.9; its max_semantic_tokens "
    "must return semantic_token_cap(self.max_duration_s). Remove this marker with that change.",
)
def test_generation_params_cap_is_the_originals() -> None:
    for d in np.round(np.arange(0.05, 4.0001, 0.05), 2):
        assert GenerationParams(max_duration_s=float(d)).max_semantic_tokens == semantic_token_cap(float(d))
