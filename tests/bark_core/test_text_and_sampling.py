"""Sentence chunking, and the sampling filters against the original's numpy code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax

from bark_core.errors import InvalidTextError
from bark_core.sampling import filter_logits, next_token
from bark_core.text import split_text


def test_sentences_are_packed_within_the_limit() -> None:
    text = "Hello there. How are you today? I am fine, thanks!   New line.\n\nAnother paragraph."
    chunks = split_text(text, max_chars=40)
    assert chunks == ["Hello there. How are you today?", "I am fine, thanks! New line.", "Another paragraph."]
    assert split_text("One sentence.") == ["One sentence."]


def test_overlong_sentence_is_cut_at_a_comma_or_space() -> None:
    sentence = "word " * 30 + "and then, " + "more " * 30
    chunks = split_text(sentence, max_chars=100)
    assert all(len(c) <= 100 for c in chunks)
    assert " ".join(chunks).split() == sentence.split()


def test_empty_text_is_refused() -> None:
    with pytest.raises(InvalidTextError):
        split_text("   \n ")


def _original_top_p(logits: np.ndarray, top_p: float) -> np.ndarray:
    """suno-ai/bark generation.py's top-p, verbatim in substance."""
    logits = logits.copy()
    sorted_indices = np.argsort(logits)[::-1]
    sorted_logits = logits[sorted_indices]
    cumulative_probs = np.cumsum(softmax(sorted_logits))
    remove = cumulative_probs > top_p
    remove[1:] = remove[:-1].copy()
    remove[0] = False
    logits[sorted_indices[remove]] = -np.inf
    return logits


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9])
def test_top_p_matches_the_original(top_p: float) -> None:
    logits = np.random.default_rng(1).normal(size=500).astype(np.float32) * 3
    ours = filter_logits(torch.from_numpy(logits), None, top_p).numpy()
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(_original_top_p(logits, top_p)))


def test_top_k_keeps_k() -> None:
    logits = torch.arange(100, dtype=torch.float32)
    kept = torch.isfinite(filter_logits(logits, 5, None))
    assert kept.sum() == 5 and kept[-5:].all()


def test_greedy_and_eos_probability() -> None:
    logits = torch.tensor([0.0, 5.0, 1.0])
    assert next_token(logits, 0.0, None, None, None) == (1, 0.0)
    assert next_token(torch.tensor([0.0, 1.0, 9.0]), 0.0, None, None, None) == (2, 1.0)
    gen = torch.Generator().manual_seed(0)
    index, eos_p = next_token(logits, 1.0, 1, None, gen)  # top-k 1 is greedy, as the original
    assert (index, eos_p) == (1, 0.0)
