"""The sampling rules of bark 0.1.5 that the stages must keep: the duration cap, EOS by
probability, temperature, and the batched sampler against the one-row original."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bark_core.constants import (
    MAX_SEMANTIC_TOKENS,
    MAX_TEXT_TOKENS,
    SEMANTIC_PAD_TOKEN,
    SEMANTIC_VOCAB_SIZE,
    TEXT_ENCODING_OFFSET,
    semantic_token_cap,
)
from bark_core.modules import GPTShape, KVCache
from bark_core.params import GenerationParams
from bark_core.sampling import BatchSampling, next_token, sample_batch, sample_positions
from bark_core.stages import RowControl, generate_semantic


def test_semantic_token_cap_is_the_first_count_over_the_duration() -> None:
    assert semantic_token_cap(None) == MAX_SEMANTIC_TOKENS
    assert semantic_token_cap(0.01) == 1  # the original always keeps its first token
    assert semantic_token_cap(0.25) == 13  # 12 tokens are 0.2405 s, 13 are 0.2605 s
    assert semantic_token_cap(1.0) == 50
    # 50 * (1 / 49.9) summed is 1.0020040080160326, over 50 / 49.9 = ...0322 by rounding: the
    # original stops at 50 there, where comparing n / 49.9 would go on to 51
    assert semantic_token_cap(50 / 49.9) == 50
    assert semantic_token_cap(1e4) == MAX_SEMANTIC_TOKENS


def test_generation_params_cap_is_the_originals() -> None:
    for d in np.round(np.arange(0.05, 4.0001, 0.05), 2):
        assert GenerationParams(max_duration_s=float(d)).max_semantic_tokens == semantic_token_cap(float(d))


class _EosAt:
    """A stand-in semantic model: flat logits over the 10,000 semantic ids, with the EOS
    logit at `step` set to `eos_logit` (and -inf at the other steps), the same for every row."""

    device = torch.device("cpu")

    def __init__(self, step: int, eos_logit: float) -> None:
        self.step, self.eos_logit = step, eos_logit
        self.shape = GPTShape(1024, 129_600, 10_048, 1, 1, 4, False)
        self.input_embeds_layer = torch.nn.Embedding(129_600, 4)

    def new_cache(self, batch: int, slots: int, static: bool = False) -> KVCache:
        return KVCache(self.shape, batch, slots, "cpu", torch.float32, static)

    def __call__(self, embeds: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        step = cache.length + embeds.shape[1] - (MAX_TEXT_TOKENS + 1)  # the prefill is step 0
        cache.length += embeds.shape[1]
        logits = torch.zeros(embeds.shape[0], 10_048)
        logits[:, SEMANTIC_PAD_TOKEN] = self.eos_logit if step == self.step else -float("inf")
        return logits


def _eos_logit(p_eos: float, temp: float) -> float:
    """The logit that gives EOS probability p_eos beside 10,000 zero logits at `temp`."""
    return temp * math.log(p_eos * SEMANTIC_VOCAB_SIZE / (1 - p_eos))


@pytest.mark.parametrize("temp", [0.5, 0.7, 1.3])
@pytest.mark.parametrize(("p_eos", "ends"), [(0.2 * 1.001, True), (0.2 * 0.999, False)])
def test_min_eos_p_ends_a_row_just_above_the_threshold(temp: float, p_eos: float, ends: bool) -> None:
    """At step 5 P(EOS) is 0.1% above or below min_eos_p 0.2 (after dividing by the
    temperature); the seeds' draws there are semantic ids, so only the threshold can end it."""
    model = _EosAt(5, _eos_logit(p_eos, temp))
    controls = [RowControl(temp, generator=torch.Generator().manual_seed(seed)) for seed in (0, 4, 5)]
    text = [np.array([TEXT_ENCODING_OFFSET])] * 3
    out = generate_semantic(model, text, [None] * 3, controls, [0.2] * 3, [12] * 3)  # type: ignore[arg-type]
    assert [len(t) for t in out] == [5 if ends else 12] * 3


def test_min_eos_p_equal_to_the_eos_probability_ends_the_row() -> None:
    """bark 0.1.5 ends at `probs[-1] >= min_eos_p`: a threshold equal to P(EOS) to the last bit
    (the float32 probability the sampler computes) ends the row, as one just above does not."""
    temp, model = 0.7, _EosAt(5, _eos_logit(0.2, 0.7))
    row = torch.zeros(SEMANTIC_VOCAB_SIZE + 1)
    row[-1] = model.eos_logit
    p_eos = float(torch.softmax(row[None] / torch.tensor([temp])[:, None], dim=-1)[0, -1])
    text = [np.array([TEXT_ENCODING_OFFSET])]

    def length(threshold: float) -> int:
        control = RowControl(temp, generator=torch.Generator().manual_seed(0))
        [out] = generate_semantic(model, text, [None], [control], [threshold], [12])  # type: ignore[arg-type]
        return len(out)  # type: ignore[arg-type]

    assert (length(p_eos), length(math.nextafter(p_eos, 1.0))) == (5, 12)


# ----------------------------------------------------------------------------- the batched sampler


def _one_row_reference(logits: torch.Tensor, temp: float, top_k, top_p, gen) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """The one-row sampler the batched one replaced: top-p, top-k, softmax(logits / temp) and
    torch.multinomial, per row."""
    logits = logits.float().clone()
    if temp == 0.0:
        index = int(torch.argmax(logits))
        return index, 1.0 if index == logits.numel() - 1 else 0.0
    if top_p is not None:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True)
        remove = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1) > top_p
        remove[1:] = remove[:-1].clone()
        remove[0] = False
        logits[sorted_idx[remove]] = -float("inf")
    if top_k is not None:
        logits[logits < torch.topk(logits, min(top_k, logits.numel())).values[-1]] = -float("inf")
    probs = torch.softmax(logits / temp, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen)), float(probs[-1])


ROWS = [  # (temp, top_k, top_p): greedy, the defaults, each filter, both, extremes
    (0.0, None, None),
    (0.7, None, None),
    (0.5, 50, None),
    (1.3, None, 0.9),
    (0.7, 20, 0.8),
    (0.0, 5, 0.5),
    (2.0, 1, None),
    (0.001, None, 0.05),
]


@pytest.mark.parametrize("vocab", [1024, SEMANTIC_VOCAB_SIZE + 1])
def test_batched_sampler_gives_the_one_row_multinomial_tokens(vocab: int) -> None:
    """Every row of one batched pass, over 30 steps and several seeds, equals the one-row
    sampler with torch.multinomial: same index, same P(EOS) bits, same generator state."""
    for seed in range(4):
        ours = [torch.Generator().manual_seed(seed * 100 + i) for i in range(len(ROWS))]
        theirs = [torch.Generator().manual_seed(seed * 100 + i) for i in range(len(ROWS))]
        temps, top_k, top_p = ([row[i] for row in ROWS] for i in range(3))
        s = BatchSampling.build(temps, top_k, top_p, ours, "cpu", vocab)
        logits_gen = torch.Generator().manual_seed(seed)
        for _ in range(30):
            logits = torch.randn(len(ROWS), vocab, generator=logits_gen) * 4
            index, eos_p = sample_batch(logits, s, list(range(len(ROWS))))
            expected = [_one_row_reference(logits[b], *ROWS[b], theirs[b]) for b in range(len(ROWS))]
            assert list(zip(index.tolist(), eos_p.tolist(), strict=True)) == expected
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a.get_state(), b.get_state())


def test_fine_positions_draw_as_multinomial_over_each_rows_fill() -> None:
    temps, starts = [0.5, 0.0, 1.0], [0, 300, 1000]
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1024, 1024, generator=gen)
    ours = [torch.Generator().manual_seed(i) for i in range(3)]
    s = BatchSampling.build(temps, [None] * 3, [None] * 3, ours, "cpu", 1024)
    picked = sample_positions(logits, s, starts)
    for b, (temp, start) in enumerate(zip(temps, starts, strict=True)):
        rows = logits[b, start:]
        if temp == 0.0:
            expected = rows.argmax(-1)
        else:
            probs = torch.softmax(rows / temp, dim=-1)
            expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(b)).squeeze(-1)
        assert torch.equal(picked[b, start:], expected)


def test_non_finite_logits_never_yield_a_nan_draw() -> None:
    """fp16 can overflow to inf and spread NaN: NaN slots are never drawn, +inf wins greedy."""
    logits = torch.tensor([0.5, float("nan"), 2.0, float("inf"), -1.0])
    assert next_token(logits, 0.0, None, None, None)[0] == 3
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        index, eos_p = next_token(logits.clone(), 0.7, None, None, gen)
        assert index != 1 and eos_p == eos_p  # not NaN
    nan_row = torch.tensor([0.1, float("nan"), 0.3])
    gen = torch.Generator().manual_seed(0)
    assert next_token(nan_row, 1.0, None, None, gen)[0] in (0, 2)
