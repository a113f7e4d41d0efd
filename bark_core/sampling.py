"""Choosing the next token of every row of a batch, exactly as suno-ai/bark does it for one.

Order as in the original: top-p over the raw logits, then top-k, then softmax(logits / temp),
then one draw. Temperature 0 means argmax. Each row draws from its own `torch.Generator`, so
a row's tokens do not depend on which other rows share its batch.

The draw is torch.multinomial's own algorithm, written out so that it runs for the whole
batch without reading anything back: for one sample multinomial computes
argmax(probs / q) with q ~ Exp(1) from `empty_like(probs).exponential_(generator)`. Filling
each row's q from that row's generator consumes the generator exactly as multinomial did,
so the tokens are the same bit for bit (tests/bark_core/test_sampling_rules.py checks it
against torch.multinomial), without multinomial's host reads (its input checks) per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NO_THRESHOLD = float("inf")  # a min_eos_p that never ends a row


@dataclass
class BatchSampling:
    """The per-row sampling settings of a batch, as tensors on the logits' device.

    Rows leave a batch as they finish: `select` keeps the settings of the rows that stay."""

    temp: torch.Tensor  # (B,) float32; 1 on greedy rows, which are never divided
    greedy: torch.Tensor  # (B,) bool
    top_k: torch.Tensor | None  # (B,) int64, the vocabulary size where a row has none; None: no row
    top_p: torch.Tensor | None  # (B,) float32, inf where a row has none; None: no row has one
    generators: list[torch.Generator | None]
    greedy_rows: list[bool]

    @classmethod
    def build(
        cls,
        temps: Sequence[float],
        top_k: Sequence[int | None],
        top_p: Sequence[float | None],
        generators: Sequence[torch.Generator | None],
        device: torch.device | str,
        vocab: int,
    ) -> BatchSampling:
        greedy = [t == 0.0 for t in temps]
        return cls(
            temp=torch.tensor([1.0 if g else t for t, g in zip(temps, greedy, strict=True)], device=device),
            greedy=torch.tensor(greedy, device=device),
            top_k=None
            if all(k is None for k in top_k)
            else torch.tensor([vocab if k is None else min(k, vocab) for k in top_k], device=device),
            top_p=None
            if all(p is None for p in top_p)
            else torch.tensor([NO_THRESHOLD if p is None else p for p in top_p], device=device),
            generators=list(generators),
            greedy_rows=greedy,
        )

    def select(self, rows: list[int], rows_t: torch.Tensor) -> BatchSampling:
        """The settings of batch rows `rows` (also given as a device tensor, `rows_t`)."""
        return BatchSampling(
            temp=self.temp[rows_t],
            greedy=self.greedy[rows_t],
            top_k=None if self.top_k is None else self.top_k[rows_t],
            top_p=None if self.top_p is None else self.top_p[rows_t],
            generators=[self.generators[b] for b in rows],
            greedy_rows=[self.greedy_rows[b] for b in rows],
        )


def filter_batch(
    logits: torch.Tensor, top_k: torch.Tensor | None, top_p: torch.Tensor | None
) -> torch.Tensor:
    """Set to -inf what each row's top-p then top-k exclude. logits: (B, V) float32."""
    if top_p is not None:
        sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        over = cumulative > top_p[:, None]
        # keep the first token past the threshold too, and always the best one
        remove = torch.cat([torch.zeros_like(over[:, :1]), over[:, :-1]], dim=-1)
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(-1, sorted_idx, remove), -float("inf"))
    if top_k is not None:
        # the k-th largest value of each row (the original's topk(...).values[-1])
        kth = torch.sort(logits, dim=-1, descending=True).values.gather(-1, top_k[:, None] - 1)
        logits = logits.masked_fill(logits < kth, -float("inf"))
    return logits


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """One row's filter: (V,) float32 logits, not modified."""
    row = BatchSampling.build([1.0], [top_k], [top_p], [None], logits.device, logits.numel())
    return filter_batch(logits[None], row.top_k, row.top_p)[0]


def _exponential(
    shape: torch.Size, rows: Sequence[int], s: BatchSampling, like: torch.Tensor
) -> torch.Tensor:
    """Exp(1) draws for batch rows `rows`, each from its own generator (what multinomial would
    draw for that row); 1 elsewhere (greedy or idle rows draw nothing)."""
    q = torch.ones(shape, dtype=like.dtype, device=like.device)
    for b in rows:
        if not s.greedy_rows[b]:
            q[b].exponential_(1, generator=s.generators[b])
    return q


def sample_batch(
    logits: torch.Tensor,  # (B, V) each row's relevant logits
    s: BatchSampling,
    rows: Sequence[int],  # the batch rows that draw this step; the others' results are unused
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) index into each row's logits and (B,) float32 probability given to the last index
    (the EOS slot: 1 or 0 on greedy rows, as the argmax is or is not EOS). Nothing is read back."""
    x = logits.float()
    probs = F.softmax(filter_batch(x, s.top_k, s.top_p) / s.temp[:, None], dim=-1)
    score = torch.where(s.greedy[:, None], x, probs / _exponential(probs.shape, rows, s, probs))
    index = torch.argmax(score, dim=-1)
    last = (index == logits.shape[-1] - 1).to(probs.dtype)
    return index, torch.where(s.greedy, last, probs[:, -1])


def next_token(
    logits: torch.Tensor,  # (V,) the row's relevant logits
    temp: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> tuple[int, float]:
    """One row: (index into logits, probability given to the last index, the EOS slot)."""
    row = BatchSampling.build([temp], [top_k], [top_p], [generator], logits.device, logits.numel())
    index, eos_p = sample_batch(logits[None], row, [0])
    return int(index[0]), float(eos_p[0])


def sample_positions(
    logits: torch.Tensor,  # (B, T, V) one codebook over a window's positions
    s: BatchSampling,  # no top-k / top-p: the original's fine stage has none
    starts: Sequence[int],  # per row: the first position it fills
) -> torch.Tensor:
    """(B, T) tokens, at each row's positions from its start on (the others are unused): argmax
    on greedy rows, else softmax(logits / temp) draws, position after position, from the row's
    generator (as multinomial over the row's (T - start, V) probabilities)."""
    probs = F.softmax(logits.float() / s.temp[:, None, None], dim=-1)
    q = torch.ones_like(probs)
    for b, start in enumerate(starts):
        if not s.greedy_rows[b]:
            q[b, start:].exponential_(1, generator=s.generators[b])
    return torch.where(s.greedy[:, None], logits.argmax(dim=-1), (probs / q).argmax(dim=-1))
