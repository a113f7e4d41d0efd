"""A decode step over a static cache, replayed as a CUDA graph where graphs are on.

A bark-small decode step is ~355 small kernels against ~40 µs of weight reads on an H100-class
card: launch-bound (~2 ms a step, whatever the GPU). A CUDA graph launches them as one. It
needs every step to have the same shapes and addresses and no host value in it: a static
KVCache (modules.KVCache(static=True)) written at its device-side counter, and token ids read
from a buffer this object owns. Sampling stays outside the graph (it draws from per-row
generators, and its one host read ends the step anyway).

The first call for a vocabulary slice runs eagerly (a real step, and the warm-up cuBLAS wants
before a capture); the second captures the step and replays it; later calls replay. A graph
belongs to one cache's tensors: a stage makes a new DecodeStep when rows leave its batch
(`KVCache.keep_rows` copies them). On CPU, or without `graphs`, every call is the same eager
function, which is what the CPU tests run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .modules import CausalGPT, KVCache


@dataclass
class Graphs:
    """CUDA-graph capture for a pipeline's decode steps: one memory pool shared by all its
    graphs (one stage runs at a time), and counts for gpu-check and the tests."""

    captured: int = 0
    replayed: int = 0
    pool: Any = field(default=None, repr=False)

    def pool_handle(self) -> Any:
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        return self.pool


class DecodeStep:
    """One new token per row through `model`, into the static `cache`; returns the last
    position's logits (B, V) or (B, len(vocab)). A replayed graph returns the same output
    tensor every step: read it before the next call."""

    def __init__(self, model: CausalGPT, cache: KVCache, graphs: Graphs | None) -> None:
        if not cache.static:
            raise ValueError("a decode step needs a static cache (same shapes every step)")
        self.model, self.cache = model, cache
        self.tokens = torch.zeros((cache.batch, 1), dtype=torch.long, device=cache.k.device)
        self.graphs = graphs if cache.k.is_cuda else None
        self._warm: set[tuple[int, int] | None] = set()
        self._captured: dict[tuple[int, int] | None, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def __call__(self, tokens: torch.Tensor, vocab: slice | None = None) -> torch.Tensor:
        self.tokens.copy_(tokens)
        key = None if vocab is None else (vocab.start, vocab.stop)
        if self.graphs is None or key not in self._warm:
            self._warm.add(key)
            return self._forward(vocab)
        if key not in self._captured:
            self._captured[key] = self._capture(vocab)
        graph, out = self._captured[key]
        graph.replay()
        self.cache.length += 1  # what the eager forward counts on the host
        self.graphs.replayed += 1
        return out

    def _forward(self, vocab: slice | None) -> torch.Tensor:
        cache, model = self.cache, self.model
        filled = cache.filled.view(1, 1)
        positions = filled if cache.pads is None else filled - cache.pads[:, None]
        return model(model.input_embeds_layer(self.tokens), positions, cache, vocab=vocab)

    def _capture(self, vocab: slice | None) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        assert self.graphs is not None
        graph = torch.cuda.CUDAGraph()
        length = self.cache.length
        with torch.cuda.graph(graph, pool=self.graphs.pool_handle()):
            out = self._forward(vocab)  # recorded, not run
        self.cache.length = length
        self.graphs.captured += 1
        return graph, out
