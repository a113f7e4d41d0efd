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
    COARSE_WINDOW,
    CODEBOOK_SIZE,
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
from .modules import CausalGPT, FineGPT, KVCache
from .sampling import greedy_rows, next_token, sample_positions

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


@torch.inference_mode()
def generate_semantic(
    model: CausalGPT,
    text_tokens: Sequence[np.ndarray],  # per row: tokenizer ids, already offset by 10,048
    histories: Sequence[np.ndarray | None],  # per row: the preset's semantic_prompt
    controls: Sequence[RowControl],
    min_eos_p: Sequence[float | None],
    max_tokens: Sequence[int],  # per row, at most 768
    progress: Progress | None = None,
) -> list[np.ndarray | None]:
    """Text -> semantic tokens. None for a cancelled row."""
    device = model.device
    B = len(text_tokens)
    text = np.stack([_pad_right(t[:MAX_TEXT_TOKENS], MAX_TEXT_TOKENS, TEXT_PAD_TOKEN) for t in text_tokens])
    hist = np.stack(
        [
            _pad_right(h[-MAX_SEMANTIC_HISTORY:], MAX_SEMANTIC_HISTORY, SEMANTIC_PAD_TOKEN)
            if h is not None
            else np.full(MAX_SEMANTIC_HISTORY, SEMANTIC_PAD_TOKEN)
            for h in histories
        ]
    )
    embed = model.input_embeds_layer
    text_t = torch.from_numpy(text).to(device)
    hist_t = torch.from_numpy(hist).to(device)
    infer = torch.full((B, 1), SEMANTIC_INFER_TOKEN, device=device)
    # the original's merge_context: text and history embeddings summed position-wise
    prefix = torch.cat([embed(text_t) + embed(hist_t), embed(infer)], dim=1)  # (B, 257, C)
    steps = max(max_tokens)
    cache = model.new_cache(B, prefix.shape[1] + steps)
    positions = torch.arange(prefix.shape[1], device=device)[None]

    out: list[list[int]] = [[] for _ in range(B)]
    result: list[np.ndarray | None] = [None] * B
    live = list(range(B))  # original row index of each batch row
    logits = model(prefix, positions, cache)
    for step in range(steps):
        tokens, keep = [], []
        # 10,000 semantic ids plus the EOS id (10,000 = SEMANTIC_PAD_TOKEN) at the end
        relevant_all = logits[:, : SEMANTIC_VOCAB_SIZE + 1]
        greedy = greedy_rows(relevant_all, [controls[row].temp == 0.0 for row in live])
        for b, row in enumerate(live):
            ctl = controls[row]
            if ctl.cancelled():
                continue
            picked = greedy[b]
            if picked is not None:
                index, eos_p = picked, 1.0 if picked == SEMANTIC_VOCAB_SIZE else 0.0
            else:
                relevant = relevant_all[b]
                index, eos_p = next_token(relevant, ctl.temp, ctl.top_k, ctl.top_p, ctl.generator)
            threshold = min_eos_p[row]
            eos = index == SEMANTIC_VOCAB_SIZE or (threshold is not None and eos_p >= threshold)
            if not eos:
                out[row].append(index)
            if eos or len(out[row]) >= max_tokens[row]:
                result[row] = np.array(out[row], dtype=np.int64)
                continue
            tokens.append(index)
            keep.append(b)
        if progress:
            progress(step + 1, steps)
        if not keep:
            break
        if len(keep) < len(live):
            cache.keep_rows(torch.tensor(keep, device=device))
            live = [live[b] for b in keep]
        token_t = torch.tensor(tokens, device=device)[:, None]
        pos = torch.full((1, 1), cache.length, device=device)
        logits = model(embed(token_t), pos, cache)
    if progress:
        progress(steps, steps)
    return result


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
    sem = r.semantic[max(0, semantic_idx - max_semantic_history) :][:256]
    sem = _pad_right(sem, 256, COARSE_SEMANTIC_PAD_TOKEN)
    coarse = np.array(r.coarse[-MAX_COARSE_HISTORY:], dtype=np.int64)
    return np.concatenate([sem, [COARSE_INFER_TOKEN], coarse])


def window_extends(held: np.ndarray, window: np.ndarray) -> bool:
    """True when `window` is `held` (what a row's cache holds) plus new tokens at its end: the
    same start, so the same positions, and the cache stays exact for the new window."""
    return len(window) > len(held) and bool(np.array_equal(window[: len(held)], held))


@dataclass
class _CoarseCache:
    """The KV cache a window leaves behind, for the next window to extend when it can."""

    cache: KVCache
    pads: torch.Tensor  # (B,) left padding of each batch row
    rows: list[int]  # the _CoarseRow.row of each batch row
    held: list[np.ndarray]  # each batch row's tokens in the cache, padding excluded


@torch.inference_mode()
def generate_coarse(
    model: CausalGPT,
    semantic: Sequence[np.ndarray],
    histories: Sequence[tuple[np.ndarray, np.ndarray] | None],  # (semantic_prompt, coarse_prompt)
    controls: Sequence[RowControl],
    progress: Progress | None = None,
    reuse_cache: bool = True,
) -> list[np.ndarray | None]:
    """Semantic tokens -> coarse codes (2, T) per row, in sliding windows of 60 steps.

    The original prefills each window from scratch. Where a window is the previous one plus
    the tokens just generated (same start, same positions: early windows without a long voice
    history), the cache is kept and only the new tokens are fed (`reuse_cache`)."""
    device = model.device
    rows: list[_CoarseRow] = []
    result: list[np.ndarray | None] = [None] * len(semantic)
    for i, (sem, hist) in enumerate(zip(semantic, histories, strict=True)):
        sem_hist, coarse_hist = (
            coarse_histories(*hist) if hist is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        )
        n_steps = coarse_steps(len(sem))
        if n_steps == 0:
            result[i] = np.zeros((N_COARSE_CODEBOOKS, 0), dtype=np.int64)
            continue
        rows.append(
            _CoarseRow(
                i,
                np.concatenate([sem_hist, sem]).astype(np.int64),
                list(coarse_hist),
                len(sem_hist),
                len(coarse_hist),
                n_steps,
            )
        )
    total = max((r.n_steps for r in rows), default=0)
    n_step = 0
    state: _CoarseCache | None = None
    while rows:
        rows = [r for r in rows if not controls[r.row].cancelled()]
        if not rows:
            break
        windows = [_coarse_window(r, n_step) for r in rows]
        rows, state = _coarse_window_steps(
            model, rows, windows, n_step, controls, device, state if reuse_cache else None
        )
        n_step += COARSE_WINDOW
        if progress:
            progress(min(n_step, total), total)
        for r in [r for r in rows if n_step >= r.n_steps]:
            gen = np.array(r.coarse[r.n_history :], dtype=np.int64) - SEMANTIC_VOCAB_SIZE
            codes = gen.reshape(-1, N_COARSE_CODEBOOKS).T.copy()
            codes[1] -= CODEBOOK_SIZE
            result[r.row] = codes
        rows = [r for r in rows if n_step < r.n_steps]
    return result


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
    device = state.pads.device
    if keep != list(range(len(state.rows))):
        keep_t = torch.tensor(keep, device=device)
        state.cache.keep_rows(keep_t)
        state.pads = state.pads[keep_t]
    state.rows = [r.row for r in rows]
    state.held = held
    tail = torch.from_numpy(np.stack([w[-t:] for w in windows])).to(device)
    return state, tail


def _coarse_window_steps(
    model: CausalGPT,
    rows: list[_CoarseRow],
    windows: list[np.ndarray],
    n_step0: int,
    controls: Sequence[RowControl],
    device: torch.device,
    previous: _CoarseCache | None = None,
) -> tuple[list[_CoarseRow], _CoarseCache]:
    """One sliding window: prefill the (left-padded) windows, or extend the previous window's
    cache by what is new, then up to 60 decode steps."""
    extended = _extend_cache(previous, rows, windows)
    if extended is not None:
        state, ids = extended
        cache, pads = state.cache, state.pads
        start = cache.length
        cache.reserve(start + ids.shape[1] + COARSE_WINDOW)
    else:
        lengths = [len(w) for w in windows]
        width = max(lengths)
        pads = torch.tensor([width - n for n in lengths], device=device)
        ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        for b, w in enumerate(windows):
            ids[b, width - len(w) :] = torch.from_numpy(w)
        cache = model.new_cache(len(rows), width + COARSE_WINDOW)
        state = _CoarseCache(cache, pads, [r.row for r in rows], [])
        start = 0
    padded = bool((pads > 0).any())
    T = ids.shape[1]
    slots = torch.arange(cache.slots, device=device)
    # each row counts positions from its own first real token, as if it were alone
    positions = (slots[None, start : start + T] - pads[:, None]).clamp(min=0)
    mask = None  # no padding: plain causal attention (a prefill) or all keys (one new token)
    if padded or (start > 0 and T > 1):
        valid_key = slots[None, : start + T] >= pads[:, None]  # (B, S)
        causal = slots[start : start + T, None] >= slots[None, : start + T]  # (T, S)
        mask = valid_key[:, None, :] & causal[None]  # (B, T, S)
        # padding queries attend to themselves only, so no softmax row is empty (NaN)
        mask |= (slots[start : start + T, None] == slots[None, : start + T])[None]
        mask = mask[:, None]

    def codebook(n_step: int) -> tuple[int, slice]:
        """The ids a step may emit: the first codebook on even steps, the second on odd."""
        first = SEMANTIC_VOCAB_SIZE + (0 if n_step % N_COARSE_CODEBOOKS == 0 else CODEBOOK_SIZE)
        return first, slice(first, first + CODEBOOK_SIZE)

    relevant = model(model.input_embeds_layer(ids), positions, cache, mask, vocab=codebook(n_step0)[1])
    held = (
        [np.concatenate([h, w[-T:]]) for h, w in zip(state.held, windows, strict=True)]
        if start
        else [w.copy() for w in windows]
    )
    n_live = list(range(len(rows)))  # batch index -> index into rows
    for j in range(COARSE_WINDOW):
        n_step = n_step0 + j
        first, _ = codebook(n_step)  # `relevant` holds this codebook's logits only
        greedy = greedy_rows(relevant, [controls[rows[ri].row].temp == 0.0 for ri in n_live])
        tokens, keep = [], []
        for b, ri in enumerate(n_live):
            r = rows[ri]
            if n_step >= r.n_steps or controls[r.row].cancelled():
                continue
            ctl = controls[r.row]
            index = greedy[b]
            if index is None:
                index, _ = next_token(relevant[b], ctl.temp, ctl.top_k, ctl.top_p, ctl.generator)
            r.coarse.append(first + index)
            tokens.append(first + index)
            keep.append(b)
        if not keep or j == COARSE_WINDOW - 1:
            break
        if len(keep) < len(n_live):
            keep_t = torch.tensor(keep, device=device)
            cache.keep_rows(keep_t)
            pads = pads[keep_t]
            held = [held[b] for b in keep]
            n_live = [n_live[b] for b in keep]
            padded = bool((pads > 0).any())
        slot = cache.length
        pos = (slot - pads)[:, None]
        step_mask = (slots[None, None, None, : slot + 1] >= pads[:, None, None, None]) if padded else None
        relevant = model(
            model.input_embeds_layer(torch.tensor(tokens, device=device)[:, None]),
            pos,
            cache,
            step_mask,
            vocab=codebook(n_step + 1)[1],
        )
        held = [np.append(h, t) for h, t in zip(held, tokens, strict=True)]
    live = [rows[ri] for ri in n_live]
    state.pads, state.rows, state.held = pads, [r.row for r in live], held
    state.cache = cache
    return [r for r in rows if not controls[r.row].cancelled()], state


# ----------------------------------------------------------------------------- fine


@dataclass
class _FineRow:
    row: int
    codes: torch.Tensor  # (T_total, 8) history + coarse + padding
    n_history: int
    n_coarse_frames: int
    n_pad: int
    n_loops: int


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
    rows: list[_FineRow] = []
    result: list[np.ndarray | None] = [None] * len(coarse)
    n_given = N_COARSE_CODEBOOKS
    for i, (codes, hist) in enumerate(zip(coarse, histories, strict=True)):
        T = codes.shape[1]
        if T == 0:
            result[i] = np.zeros((N_FINE_CODEBOOKS, 0), dtype=np.int64)
            continue
        arr = np.vstack([codes, np.full((N_FINE_CODEBOOKS - n_given, T), CODEBOOK_SIZE)])
        n_history = 0
        if hist is not None:
            h = hist[:, -MAX_FINE_HISTORY:]
            arr = np.hstack([h, arr])
            n_history = h.shape[1]
        n_pad = max(0, FINE_WINDOW - arr.shape[1])  # the model is non-causal: pad to a window
        arr = np.hstack([arr, np.full((N_FINE_CODEBOOKS, n_pad), CODEBOOK_SIZE)])
        n_loops = max(0, int(np.ceil((T - (FINE_WINDOW - n_history)) / 512))) + 1
        tensor = torch.from_numpy(arr.T.astype(np.int64)).to(device)
        rows.append(_FineRow(i, tensor, n_history, T, n_pad, n_loops))

    total = max((r.n_loops for r in rows), default=0)
    for n in range(total):
        active = [r for r in rows if n < r.n_loops and not controls[r.row].cancelled()]
        if not active:
            break
        starts, fills = [], []
        for r in active:
            length = r.codes.shape[0]
            start = min(n * 512, length - FINE_WINDOW)
            fill = min(r.n_history + n * 512, length - 512)
            starts.append(start)
            fills.append(fill - start)
        buffer = torch.stack([r.codes[s : s + FINE_WINDOW] for r, s in zip(active, starts, strict=True)])
        for codebook in range(n_given, N_FINE_CODEBOOKS):
            logits = model(codebook, buffer)[:, :, :CODEBOOK_SIZE]
            for b, r in enumerate(active):
                ctl = controls[r.row]
                rel = fills[b]
                buffer[b, rel:, codebook] = sample_positions(logits[b, rel:], ctl.temp, ctl.generator)
        for b, r in enumerate(active):
            s, rel = starts[b], fills[b]
            r.codes[s + rel : s + FINE_WINDOW, n_given:] = buffer[b, rel:, n_given:]
        if progress:
            progress(n + 1, total)

    for r in rows:
        if controls[r.row].cancelled():
            continue
        full = r.codes.T.cpu().numpy()
        result[r.row] = full[:, r.n_history : r.n_history + r.n_coarse_frames].astype(np.int64)
    return result
