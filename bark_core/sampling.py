"""Choosing the next token of one row, exactly as suno-ai/bark does it.

Order as in the original: top-p over the raw logits, then top-k, then softmax(logits / temp),
then one multinomial draw. Temperature 0 means argmax. Each row draws from its own
`torch.Generator`, so a row's tokens do not depend on which other rows share its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set to -inf what top-p then top-k exclude. logits: (V,) float32, not modified."""
    logits = logits.clone()
    if top_p is not None:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True)
        cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cumulative > top_p
        # keep the first token past the threshold too, and always the best one
        remove[1:] = remove[:-1].clone()
        remove[0] = False
        logits[sorted_idx[remove]] = -float("inf")
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits[logits < kth] = -float("inf")
    return logits


def next_token(
    logits: torch.Tensor,  # (V,) the row's relevant logits
    temp: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> tuple[int, float]:
    """Return (index into logits, probability given to the last index, the EOS slot)."""
    logits = logits.float()
    if temp == 0.0:
        index = int(torch.argmax(logits))
        return index, 1.0 if index == logits.numel() - 1 else 0.0
    probs = F.softmax(filter_logits(logits, top_k, top_p) / temp, dim=-1)
    index = int(torch.multinomial(probs, 1, generator=generator))
    return index, float(probs[-1])


def sample_positions(
    logits: torch.Tensor,  # (T, V) one row, one codebook, several positions
    temp: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One token per position (the fine stage): argmax at temperature 0, else softmax draws."""
    if temp == 0.0:
        return torch.argmax(logits, dim=-1)
    probs = F.softmax(logits.float() / temp, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


def greedy_rows(logits: torch.Tensor, greedy: list[bool]) -> list[int | None]:
    """One argmax over the whole batch (one host transfer per step, not one per row) for the
    rows decoded greedily; None for the others, which sample one by one with their generators.
    logits: (B, V) the rows' relevant logits."""
    if not any(greedy):
        return [None] * len(greedy)
    best = torch.argmax(logits, dim=-1).tolist()
    return [b if g else None for b, g in zip(best, greedy, strict=True)]
