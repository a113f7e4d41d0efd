"""The three token stages of Bark, batched: each row has its own history, length and EOS.

Each function is pure over its inputs: models, per-row arrays, per-row parameters and
per-row generators in; per-row numpy arrays out. Rows finish independently and are dropped
from the batch as they finish (or are cancelled), so later steps only compute live rows.
Semantics follow suno-ai/bark 0.1.5's generation.py line for line, with one KV cache per
decode loop instead of its re-concatenated tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .constants import (
    COARSE_INFER_TOKEN,
    COARSE_SEMANTIC_PAD_TOKEN,
    COARSE_SEMANTIC_WINDOW,
    COARSE_WINDOW,
    CODEBOOK_SIZE,
    FINE_STRIDE,
    FINE_WINDOW,
    MAX_COARSE_HISTORY,
    MAX_FINE_HISTORY,
    MAX_SEMANTIC_HISTORY,
    MAX_TEXT_TOKENS,
    N_COARSE_CODEBOOKS,
    N_FINE_CODEBOOKS,
    SEMANTIC_INFER_TOKEN,
    SEMANTIC_PAD_TOKEN,
    SEMANTIC_TO_COARSE_RATIO,
    SEMANTIC_VOCAB_SIZE,
    TEXT_PAD_TOKEN,
)
from .decode_step import DecodeStep, Graphs
from .modules import CausalGPT, FineGPT, KVCache
from .sampling import NO_THRESHOLD, BatchSampling, sample_batch, sample_positions

Progress = Callable[[int, int], None]  # (steps done, steps total)


@dataclass
class RowControl:
    """What a stage needs to know about one row besides its tokens."""

    temp: float
    top_k: int | None = None
    top_p: float | None = None
    generator: torch.Generator | None = None
    should_cancel: Callable[[], bool] | None = None

    def cancelled(self) -> bool:
        return self.should_cancel is not None and self.should_cancel()


def _pad_right(values: np.ndarray, length: int, pad: int) -> np.ndarray:
    out = np.full(length, pad, dtype=np.int64)
    out[: len(values)] = values
    return out


# ----------------------------------------------------------------------------- semantic


def _semantic_prefix(
    model: CausalGPT, text_tokens: Sequence[np.ndarray], histories: Sequence[np.ndarray | None]
) -> torch.Tensor:
    """The (B, 257, C) prefill: the original's merge_context (text and history embeddings summed
    position-wise, each padded to 256), then the infer token."""
    device = model.device
    text = np.stack([_pad_right(t[:MAX_TEXT_TOKENS], MAX_TEXT_TOKENS, TEXT_PAD_TOKEN) for t in text_tokens])
    empty = np.zeros(0, dtype=np.int64)
    hist = np.stack(
        [
            _pad_right(
                h[-MAX_SEMANTIC_HISTORY:] if h is not None else empty,
                MAX_SEMANTIC_HISTORY,
                SEMANTIC_PAD_TOKEN,
            )
            for h in histories
        ]
    )
    embed = model.input_embeds_layer
    text_t = torch.from_numpy(text).to(device)
    hist_t = torch.from_numpy(hist).to(device)
    infer = torch.full((len(text_tokens), 1), SEMANTIC_INFER_TOKEN, device=device)
    return torch.cat([embed(text_t) + embed(hist_t), embed(infer)], dim=1)


@dataclass
class _SemanticRun:
    """The rows of one semantic stage run: what each has generated, and which are still live."""

    controls: Sequence[RowControl]
    max_tokens: Sequence[int]
    sampling: BatchSampling  # of the live rows
    min_eos_p: torch.Tensor  # (B,) float64 of the live rows, inf where a row has none
    out: list[list[int]]
    result: list[np.ndarray | None]
    live: list[int]  # original row index of each batch row

    def step(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """Choose each live row's next token; finish the rows that reach EOS or their cap, and
        drop them from `live`. Returns the (B', 1) tokens to feed and, where rows left, the
        batch rows kept (for the cache); None when no row goes on. Its one host read: the
        tokens and EOS flags of all rows together."""
        # 10,000 semantic ids plus the EOS id (10,000 = SEMANTIC_PAD_TOKEN) at the end
        draw = [b for b, row in enumerate(self.live) if not self.controls[row].cancelled()]
        index, eos_p = sample_batch(logits[:, : SEMANTIC_VOCAB_SIZE + 1], self.sampling, draw)
        # compared in float64, as the Python floats of a one-row loop were
        eos = (index == SEMANTIC_VOCAB_SIZE) | (eos_p.double() >= self.min_eos_p)
        tokens, ended = torch.stack([index, eos.long()]).tolist()
        keep = []
        for b in draw:
            row = self.live[b]
            if not ended[b]:
                self.out[row].append(tokens[b])
            if ended[b] or len(self.out[row]) >= self.max_tokens[row]:
                self.result[row] = np.array(self.out[row], dtype=np.int64)
            else:
                keep.append(b)
        if not keep:
            return None
        if len(keep) == len(self.live):
            return index[:, None], None
        keep_t = torch.tensor(keep, device=index.device)
        self.sampling = self.sampling.select(keep, keep_t)
        self.min_eos_p = self.min_eos_p[keep_t]
        self.live = [self.live[b] for b in keep]
        return index[keep_t][:, None], keep_t


@torch.inference_mode()
def generate_semantic(
    model: CausalGPT,
    text_tokens: Sequence[np.ndarray],  # per row: tokenizer ids, already offset by 10,048
    histories: Sequence[np.ndarray | None],  # per row: the preset's semantic_prompt
    controls: Sequence[RowControl],
    min_eos_p: Sequence[float | None],
    max_tokens: Sequence[int],  # per row, at most 768
    progress: Progress | None = None,
    static_shapes: bool = False,
    graphs: Graphs | None = None,
) -> list[np.ndarray | None]:
    """Text -> semantic tokens. None for a cancelled row. `static_shapes`: a static cache
    (modules.KVCache), so that every decode step has the same shapes while no row leaves;
    `graphs` (implies it): those steps replayed as CUDA graphs (bark_core.decode_step)."""
    static_shapes = static_shapes or graphs is not None
    device = model.device
    B = len(text_tokens)
    thresholds = [NO_THRESHOLD if p is None else p for p in min_eos_p]
    run = _SemanticRun(
        controls,
        max_tokens,
        _sampling(controls, device, SEMANTIC_VOCAB_SIZE + 1),
        torch.tensor(thresholds, dtype=torch.float64, device=device),
        [[] for _ in range(B)],
        [None] * B,
        list(range(B)),
    )
    prefix = _semantic_prefix(model, text_tokens, histories)
    steps = max(max_tokens)
    cache = model.new_cache(B, prefix.shape[1] + steps, static=static_shapes)
    logits = model(prefix, torch.arange(prefix.shape[1], device=device)[None], cache)
    decode = DecodeStep(model, cache, graphs) if static_shapes else None
    for step in range(steps):
        chosen = run.step(logits)
        if progress:
            progress(step + 1, steps)
        if chosen is None:
            break
        token_t, keep_t = chosen
        if keep_t is not None:
            cache.keep_rows(keep_t)
            decode = DecodeStep(model, cache, graphs) if static_shapes else None
        if decode is not None:
            logits = decode(token_t)
        else:
            pos = torch.full((1, 1), cache.length, device=device)
            logits = model(model.input_embeds_layer(token_t), pos, cache)
    if progress:
        progress(steps, steps)
    return run.result


# ----------------------------------------------------------------------------- coarse


def _flatten_codebooks(codes: np.ndarray) -> np.ndarray:
    """(2, T) codes -> interleaved ids [c0_t0, c1_t0 + 1024, c0_t1, ...] past the semantic ids."""
    offset = codes + (np.arange(codes.shape[0]) * CODEBOOK_SIZE)[:, None]
    return offset.ravel("F") + SEMANTIC_VOCAB_SIZE


def coarse_histories(semantic_prompt: np.ndarray, coarse_prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim a preset's histories as the original does, keeping them time-aligned."""
    max_semantic_history = int(np.floor(MAX_COARSE_HISTORY / SEMANTIC_TO_COARSE_RATIO))
    coarse_flat = _flatten_codebooks(coarse_prompt)
    n_semantic = int(
        min(
            max_semantic_history,
            len(semantic_prompt) - len(semantic_prompt) % 2,
            int(np.floor(len(coarse_flat) / SEMANTIC_TO_COARSE_RATIO)),
        )
    )
    n_coarse = int(round(n_semantic * SEMANTIC_TO_COARSE_RATIO))
    semantic_hist = semantic_prompt[len(semantic_prompt) - n_semantic :]
    coarse_hist = coarse_flat[len(coarse_flat) - n_coarse :]
    # the original's "bit of a hack for time alignment": drop the last frame
    return semantic_hist.astype(np.int64), coarse_hist[:-2].astype(np.int64)


def coarse_steps(n_semantic: int) -> int:
    """How many coarse tokens (both codebooks) n semantic tokens become."""
    return int(
        round(np.floor(n_semantic * SEMANTIC_TO_COARSE_RATIO / N_COARSE_CODEBOOKS) * N_COARSE_CODEBOOKS)
    )


@dataclass
class _CoarseRow:
    row: int
    semantic: np.ndarray  # history + generated semantic tokens
    coarse: list[int]  # history + generated coarse ids (offset past the semantic ids)
    base_semantic_idx: int
    n_history: int
    n_steps: int


def _coarse_window(r: _CoarseRow, n_step: int) -> np.ndarray:
    """The window the original feeds at step n_step: 256 semantic, infer, <= 630 coarse."""
    max_semantic_history = int(np.floor(MAX_COARSE_HISTORY / SEMANTIC_TO_COARSE_RATIO))
    semantic_idx = r.base_semantic_idx + int(round(n_step / SEMANTIC_TO_COARSE_RATIO))
    sem = r.semantic[max(0, semantic_idx - max_semantic_history) :][:COARSE_SEMANTIC_WINDOW]
    sem = _pad_right(sem, COARSE_SEMANTIC_WINDOW, COARSE_SEMANTIC_PAD_TOKEN)
    coarse = np.array(r.coarse[-MAX_COARSE_HISTORY:], dtype=np.int64)
    return np.concatenate([sem, [COARSE_INFER_TOKEN], coarse])


def window_extends(held: np.ndarray, window: np.ndarray) -> bool:
    """True when `window` is `held` (what a row's cache holds) plus new tokens at its end: the
    same start, so the same positions, and the cache stays exact for the new window."""
    return len(window) > len(held) and bool(np.array_equal(window[: len(held)], held))


# The longest window (256 semantic, the infer token, 630 coarse) and its decode steps: the
# size of a static coarse cache, which then serves every window of a batch.
COARSE_STATIC_SLOTS = COARSE_SEMANTIC_WINDOW + 1 + MAX_COARSE_HISTORY + COARSE_WINDOW


@dataclass
class _CoarseCache:
    """The KV cache a window leaves behind, for the next window to extend when it can. Its
    `cache.pads` (B,) is each batch row's left padding."""

    cache: KVCache
    rows: list[int]  # the _CoarseRow.row of each batch row
    held: list[np.ndarray]  # each batch row's tokens in the cache, padding excluded
    pad_list: list[int]  # `cache.pads` as known here, so that no step reads them back
    step: DecodeStep | None = None  # the static cache's decode step (static shapes only)

    @property
    def padded(self) -> bool:
        return any(p > 0 for p in self.pad_list)

    @property
    def pads(self) -> torch.Tensor:
        assert self.cache.pads is not None
        return self.cache.pads


@torch.inference_mode()
def generate_coarse(
    model: CausalGPT,
    semantic: Sequence[np.ndarray],
    histories: Sequence[tuple[np.ndarray, np.ndarray] | None],  # (semantic_prompt, coarse_prompt)
    controls: Sequence[RowControl],
    progress: Progress | None = None,
    reuse_cache: bool = True,
    static_shapes: bool = False,
    graphs: Graphs | None = None,
) -> list[np.ndarray | None]:
    """Semantic tokens -> coarse codes (2, T) per row, in sliding windows of 60 steps.

    The original prefills each window from scratch. Where a window is the previous one plus
    the tokens just generated (same start, same positions: early windows without a long voice
    history), the cache is kept and only the new tokens are fed (`reuse_cache`).
    `static_shapes`: one static cache of COARSE_STATIC_SLOTS for every window of the batch
    (refilled where a window cannot extend it), so that each decode step has the same shapes
    while no row leaves; `graphs` (implies it): those steps replayed as CUDA graphs."""
    mode = _CoarseMode(reuse_cache, static_shapes or graphs is not None, graphs)
    result: list[np.ndarray | None] = [None] * len(semantic)
    rows: list[_CoarseRow] = []
    for i, (sem, hist) in enumerate(zip(semantic, histories, strict=True)):
        if coarse_steps(len(sem)) == 0:
            result[i] = np.zeros((N_COARSE_CODEBOOKS, 0), dtype=np.int64)
        else:
            rows.append(_coarse_row(i, sem, hist))
    total = max((r.n_steps for r in rows), default=0)
    n_step = 0
    state: _CoarseCache | None = None
    while rows:
        rows = [r for r in rows if not controls[r.row].cancelled()]
        if not rows:
            break
        windows = [_coarse_window(r, n_step) for r in rows]
        rows, state = _coarse_window_steps(model, rows, windows, n_step, controls, mode, state)
        n_step += COARSE_WINDOW
        if progress:
            progress(min(n_step, total), total)
        for r in rows:
            if n_step >= r.n_steps:
                result[r.row] = _coarse_codes(r)
        rows = [r for r in rows if n_step < r.n_steps]
    return result


def _coarse_row(row: int, semantic: np.ndarray, history: tuple[np.ndarray, np.ndarray] | None) -> _CoarseRow:
    empty = np.zeros(0, np.int64)
    sem_hist, coarse_hist = coarse_histories(*history) if history is not None else (empty, empty)
    return _CoarseRow(
        row,
        np.concatenate([sem_hist, semantic]).astype(np.int64),
        list(coarse_hist),
        len(sem_hist),
        len(coarse_hist),
        coarse_steps(len(semantic)),
    )


def _coarse_codes(r: _CoarseRow) -> np.ndarray:
    """A finished row's generated ids (past its history) as (2, T) codebook codes."""
    gen = np.array(r.coarse[r.n_history :], dtype=np.int64) - SEMANTIC_VOCAB_SIZE
    codes = gen.reshape(-1, N_COARSE_CODEBOOKS).T.copy()
    codes[1] -= CODEBOOK_SIZE
    return codes


def _extend_cache(
    state: _CoarseCache | None, rows: list[_CoarseRow], windows: list[np.ndarray]
) -> tuple[_CoarseCache, torch.Tensor] | None:
    """The previous window's cache cut to these rows, and the (B, t) tokens still to feed, when
    every row's window extends what its cache holds by the same number of tokens."""
    if state is None:
        return None
    index = {row: b for b, row in enumerate(state.rows)}
    if any(r.row not in index for r in rows):
        return None
    held = [state.held[index[r.row]] for r in rows]
    if not all(window_extends(h, w) for h, w in zip(held, windows, strict=True)):
        return None
    tails = {len(w) - len(h) for h, w in zip(held, windows, strict=True)}
    if len(tails) != 1:
        return None
    t = tails.pop()
    keep = [index[r.row] for r in rows]
    device = state.cache.k.device
    if keep != list(range(len(state.rows))):
        _keep_cache_rows(state, keep, torch.tensor(keep, device=device))
    state.held = held
    tail = torch.from_numpy(np.stack([w[-t:] for w in windows])).to(device)
    return state, tail


def _codebook(n_step: int) -> tuple[int, slice]:
    """The ids a coarse step may emit: the first codebook on even steps, the second on odd."""
    first = SEMANTIC_VOCAB_SIZE + (0 if n_step % N_COARSE_CODEBOOKS == 0 else CODEBOOK_SIZE)
    return first, slice(first, first + CODEBOOK_SIZE)


def _prefill_mask(slots: torch.Tensor, state: _CoarseCache, start: int, T: int) -> torch.Tensor | None:
    """(B, 1, T, S) attention mask for feeding T positions after `start` filled slots, or None
    where plain causal attention (a prefill) or all keys (one new token) is exact."""
    if not state.padded and not (start > 0 and T > 1):
        return None
    pads = state.pads
    valid_key = slots[None, : start + T] >= pads[:, None]  # (B, S)
    causal = slots[start : start + T, None] >= slots[None, : start + T]  # (T, S)
    mask = valid_key[:, None, :] & causal[None]  # (B, T, S)
    # padding queries attend to themselves only, so no softmax row is empty (NaN)
    mask |= (slots[start : start + T, None] == slots[None, : start + T])[None]
    return mask[:, None]


@dataclass(frozen=True)
class _CoarseMode:
    """How a coarse run uses its caches (generate_coarse's arguments of the same names)."""

    reuse_cache: bool = True
    static: bool = False
    graphs: Graphs | None = None


def _fresh_window(
    model: CausalGPT,
    rows: list[_CoarseRow],
    windows: list[np.ndarray],
    mode: _CoarseMode,
    previous: _CoarseCache | None,
) -> tuple[_CoarseCache, torch.Tensor]:
    """A cache for left-padded windows, and the (B, width) ids to prefill it with. A static
    cache that holds these rows is emptied and reused (so are its captured steps)."""
    device = model.device
    width = max(len(w) for w in windows)
    pad_list = [width - len(w) for w in windows]
    ids = torch.from_numpy(
        np.stack([np.concatenate([np.zeros(p, np.int64), w]) for p, w in zip(pad_list, windows, strict=True)])
    ).to(device)
    pads = torch.tensor(pad_list, device=device)
    empty = [np.zeros(0, np.int64)] * len(rows)
    row_ids = [r.row for r in rows]
    if mode.static and previous is not None and previous.rows == row_ids:
        cache = previous.cache
        cache.filled.zero_()
        cache.length = 0
        cache.pads.copy_(pads)  # type: ignore[union-attr]
        return _CoarseCache(cache, row_ids, empty, pad_list, previous.step), ids
    slots = COARSE_STATIC_SLOTS if mode.static else width + COARSE_WINDOW
    cache = model.new_cache(len(rows), slots, static=mode.static)
    cache.pads = pads
    step = DecodeStep(model, cache, mode.graphs) if mode.static else None
    return _CoarseCache(cache, row_ids, empty, pad_list, step), ids


@dataclass
class _Drawn:
    """One coarse step's tokens, still on the device: read back once per window."""

    rows: list[_CoarseRow]
    tokens: torch.Tensor  # (len(rows),) ids, offset past the semantic ids
    fed: bool  # whether they went into the cache (the window's last tokens do not)


def _prefill_window(
    model: CausalGPT,
    rows: list[_CoarseRow],
    windows: list[np.ndarray],
    n_step0: int,
    previous: _CoarseCache | None,
    mode: _CoarseMode,
) -> tuple[_CoarseCache, torch.Tensor]:
    """Feed a window: extend the previous window's cache by what is new where it can, else
    prefill a fresh one (left-padded). Returns the state and the first step's logits."""
    extended = _extend_cache(previous, rows, windows) if mode.reuse_cache else None
    state, ids = extended if extended is not None else _fresh_window(model, rows, windows, mode, previous)
    cache = state.cache
    start, T = cache.length, ids.shape[1]
    cache.reserve(start + T + COARSE_WINDOW)
    slots = torch.arange(cache.slots, device=ids.device)
    # each row counts positions from its own first real token, as if it were alone
    positions = (slots[None, start : start + T] - state.pads[:, None]).clamp(min=0)
    mask = None if cache.static else _prefill_mask(slots, state, start, T)
    relevant = model(model.input_embeds_layer(ids), positions, cache, mask, _codebook(n_step0)[1])
    state.held = [np.concatenate([h, w[-T:]]) for h, w in zip(state.held, windows, strict=True)]
    return state, relevant


def _coarse_window_steps(
    model: CausalGPT,
    rows: list[_CoarseRow],
    windows: list[np.ndarray],
    n_step0: int,
    controls: Sequence[RowControl],
    mode: _CoarseMode,
    previous: _CoarseCache | None = None,
) -> tuple[list[_CoarseRow], _CoarseCache]:
    """One sliding window: its prefill, then up to 60 decode steps, the tokens kept on the
    device until the window's end."""
    state, relevant = _prefill_window(model, rows, windows, n_step0, previous, mode)
    cache, device = state.cache, model.device
    slots = torch.arange(cache.slots, device=device)
    by_row = {r.row: r for r in rows}
    live = [by_row[row] for row in state.rows]
    sampling = _sampling([controls[r.row] for r in live], device, CODEBOOK_SIZE)
    drawn: list[_Drawn] = []
    for j in range(COARSE_WINDOW):
        n_step = n_step0 + j
        keep = [b for b, r in enumerate(live) if n_step < r.n_steps and not controls[r.row].cancelled()]
        if not keep:
            break
        tokens = sample_batch(relevant, sampling, keep)[0] + _codebook(n_step)[0]
        keep_t = torch.tensor(keep, device=device) if len(keep) < len(live) else None
        if keep_t is not None:
            tokens = tokens[keep_t]
        last = j == COARSE_WINDOW - 1
        drawn.append(_Drawn([live[b] for b in keep], tokens, fed=not last))
        if last:
            break
        if keep_t is not None:
            _keep_cache_rows(state, keep, keep_t)
            sampling = sampling.select(keep, keep_t)
            live = [live[b] for b in keep]
        vocab = _codebook(n_step + 1)[1]
        if state.step is not None:
            relevant = state.step(tokens[:, None], vocab)
        else:
            slot, pads = cache.length, state.pads
            mask = None
            if state.padded:
                mask = slots[None, None, None, : slot + 1] >= pads[:, None, None, None]
            embeds = model.input_embeds_layer(tokens[:, None])
            relevant = model(embeds, (slot - pads)[:, None], cache, mask, vocab)
    _take_tokens(drawn, state)
    return [r for r in rows if not controls[r.row].cancelled()], state


def _sampling(controls: Sequence[RowControl], device: torch.device, vocab: int) -> BatchSampling:
    return BatchSampling.build(
        [c.temp for c in controls],
        [c.top_k for c in controls],
        [c.top_p for c in controls],
        [c.generator for c in controls],
        device,
        vocab,
    )


def _take_tokens(drawn: list[_Drawn], state: _CoarseCache) -> None:
    """Read a window's tokens back (one host copy) into each row's history and what its cache
    holds."""
    if not drawn:
        return
    values = torch.cat([d.tokens for d in drawn]).tolist()
    fed: dict[int, list[int]] = {}
    i = 0
    for d in drawn:
        for r, token in zip(d.rows, values[i : i + len(d.rows)], strict=True):
            r.coarse.append(token)
            if d.fed:
                fed.setdefault(r.row, []).append(token)
        i += len(d.rows)
    state.held = [
        np.append(h, np.array(fed.get(row, []), np.int64))
        for h, row in zip(state.held, state.rows, strict=True)
    ]


def _keep_cache_rows(state: _CoarseCache, keep: list[int], keep_t: torch.Tensor) -> None:
    """Cut the window's cache and bookkeeping to the batch rows `keep` (`keep_t` on the device);
    a static cache's rows are new tensors, so its decode step is made anew."""
    state.cache.keep_rows(keep_t)
    if state.step is not None:
        state.step = DecodeStep(state.step.model, state.cache, state.step.graphs)
    state.pad_list = [state.pad_list[b] for b in keep]
    state.rows = [state.rows[b] for b in keep]
    state.held = [state.held[b] for b in keep]


# ----------------------------------------------------------------------------- fine


@dataclass
class _FineRow:
    row: int
    codes: torch.Tensor  # (T_total, 8) history + coarse + padding
    n_history: int
    n_coarse_frames: int
    n_loops: int


def _fine_row(row: int, codes: np.ndarray, hist: np.ndarray | None, device: torch.device) -> _FineRow:
    """A row's (T_total, 8) input as the original builds it: history (at most 512 frames), the
    coarse codes with the fine codebooks still padding, then padding up to one window."""
    T = codes.shape[1]
    arr = np.vstack([codes, np.full((N_FINE_CODEBOOKS - N_COARSE_CODEBOOKS, T), CODEBOOK_SIZE)])
    n_history = 0
    if hist is not None:
        h = hist[:, -MAX_FINE_HISTORY:]
        arr = np.hstack([h, arr])
        n_history = h.shape[1]
    n_pad = max(0, FINE_WINDOW - arr.shape[1])  # the model is non-causal: pad to a window
    arr = np.hstack([arr, np.full((N_FINE_CODEBOOKS, n_pad), CODEBOOK_SIZE)])
    n_loops = max(0, int(np.ceil((T - (FINE_WINDOW - n_history)) / FINE_STRIDE))) + 1
    tensor = torch.from_numpy(arr.T.astype(np.int64)).to(device)
    return _FineRow(row, tensor, n_history, T, n_loops)


def _fine_window(model: FineGPT, active: list[_FineRow], n: int, controls: Sequence[RowControl]) -> None:
    """Loop n of the original: fill the fine codebooks of each row's n-th window, one codebook
    at a time, from the window's fill start on; written back into each row's codes."""
    starts, fills = [], []
    for r in active:
        length = r.codes.shape[0]
        start = min(n * FINE_STRIDE, length - FINE_WINDOW)
        fill = min(r.n_history + n * FINE_STRIDE, length - FINE_STRIDE)
        starts.append(start)
        fills.append(fill - start)
    buffer = torch.stack([r.codes[s : s + FINE_WINDOW] for r, s in zip(active, starts, strict=True)])
    sampling = _sampling([controls[r.row] for r in active], buffer.device, CODEBOOK_SIZE)
    # each row fills its positions from its fill start on and keeps the ones before
    filled = (
        torch.arange(FINE_WINDOW, device=buffer.device)[None]
        >= torch.tensor(fills, device=buffer.device)[:, None]
    )
    for codebook in range(N_COARSE_CODEBOOKS, N_FINE_CODEBOOKS):
        logits = model(codebook, buffer)[:, :, :CODEBOOK_SIZE]
        picked = sample_positions(logits, sampling, fills)
        buffer[:, :, codebook] = torch.where(filled, picked, buffer[:, :, codebook])
    for b, r in enumerate(active):
        s, rel = starts[b], fills[b]
        r.codes[s + rel : s + FINE_WINDOW, N_COARSE_CODEBOOKS:] = buffer[b, rel:, N_COARSE_CODEBOOKS:]


@torch.inference_mode()
def generate_fine(
    model: FineGPT,
    coarse: Sequence[np.ndarray],  # per row (2, T)
    histories: Sequence[np.ndarray | None],  # per row: the preset's fine_prompt (8, T)
    controls: Sequence[RowControl],
    progress: Progress | None = None,
) -> list[np.ndarray | None]:
    """Coarse codes -> all 8 codebooks, in 1024-frame windows advancing by 512."""
    device = model.position_embeds_layer.weight.device
    result: list[np.ndarray | None] = [None] * len(coarse)
    rows: list[_FineRow] = []
    for i, (codes, hist) in enumerate(zip(coarse, histories, strict=True)):
        if codes.shape[1] == 0:
            result[i] = np.zeros((N_FINE_CODEBOOKS, 0), dtype=np.int64)
        else:
            rows.append(_fine_row(i, codes, hist, device))
    total = max((r.n_loops for r in rows), default=0)
    for n in range(total):
        active = [r for r in rows if n < r.n_loops and not controls[r.row].cancelled()]
        if not active:
            break
        _fine_window(model, active, n, controls)
        if progress:
            progress(n + 1, total)
    for r in rows:
        if not controls[r.row].cancelled():
            full = r.codes.T.cpu().numpy()
            result[r.row] = full[:, r.n_history : r.n_history + r.n_coarse_frames].astype(np.int64)
    return result
