"""Bark's three GPTs as plain modules: SDPA attention and a preallocated KV cache.

Parameter names are transformers' (`input_embeds_layer`, `layers.N.attn.att_proj`, ...), so a
`BarkModel`'s sub-model state dicts load 1:1. The math is suno-ai/bark's model.py and
model_fine.py (nanoGPT): pre-LayerNorm blocks, GELU MLP, tied fine-model heads.

Shapes: B batch, T new positions, S cache slots, H heads, D head dim, C = H * D.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTShape:
    block_size: int
    input_vocab_size: int
    output_vocab_size: int
    num_layers: int
    num_heads: int
    hidden_size: int
    bias: bool

    @classmethod
    def from_config(cls, config: object) -> GPTShape:
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


class KVCache:
    """Keys and values of every layer for up to `slots` positions, written in place.

    `static`: every forward attends over all `slots` (the unfilled ones masked) and writes at
    a device-side counter (`filled`), so that a decode step has the same shapes and no host
    value in it from one step to the next (what a CUDA graph capture needs). The slots start
    zeroed: masked keys get weight 0, and 0 * garbage could be NaN. `pads` (B,), when set: each
    row's left padding, slots a static cache's mask hides from that row's queries."""

    def __init__(self, shape: GPTShape, batch: int, slots: int, device, dtype, static: bool = False) -> None:
        head_dim = shape.hidden_size // shape.num_heads
        size = (shape.num_layers, batch, shape.num_heads, slots, head_dim)
        alloc = torch.zeros if static else torch.empty
        self.k = alloc(size, device=device, dtype=dtype)
        self.v = alloc(size, device=device, dtype=dtype)
        self.length = 0  # slots filled so far, the same for every row
        self.static = static
        self.filled = torch.zeros((), dtype=torch.long, device=device)  # `length` on the device (static)
        self.pads: torch.Tensor | None = None

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def slots(self) -> int:
        return self.k.shape[3]

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Drop finished rows so later steps do not compute them."""
        self.k = self.k.index_select(1, rows)
        self.v = self.v.index_select(1, rows)
        if self.pads is not None:
            self.pads = self.pads.index_select(0, rows)

    def reserve(self, slots: int) -> None:
        """Make room for at least `slots` positions, keeping what is filled."""
        if slots <= self.slots:
            return
        if self.static:
            raise ValueError("a static cache keeps its size: allocate the slots it needs up front")
        grow = (*self.k.shape[:3], slots - self.slots, self.k.shape[4])
        self.k = torch.cat([self.k, self.k.new_empty(grow)], dim=3)
        self.v = torch.cat([self.v, self.v.new_empty(grow)], dim=3)


class SelfAttention(nn.Module):
    def __init__(self, shape: GPTShape, bias: bool) -> None:
        super().__init__()
        self.num_heads = shape.num_heads
        self.att_proj = nn.Linear(shape.hidden_size, 3 * shape.hidden_size, bias=bias)
        self.out_proj = nn.Linear(shape.hidden_size, shape.hidden_size, bias=bias)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, C)
        mask: torch.Tensor | None,  # (B, 1, T, S) bool, True = attend; None = causal or full
        cache: KVCache | None,
        layer: int,
        causal: bool,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.att_proj(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2) for t in (q, k, v))
        if cache is not None and cache.static:
            # write at the device counter, attend over every slot (mask: the filled ones)
            at = cache.filled + torch.arange(T, device=x.device)
            cache.k[layer].index_copy_(2, at, k)
            cache.v[layer].index_copy_(2, at, v)
            k, v = cache.k[layer], cache.v[layer]
            causal = False
        elif cache is not None:
            start = cache.length
            cache.k[layer, :, :, start : start + T] = k
            cache.v[layer, :, :, start : start + T] = v
            k = cache.k[layer, :, :, : start + T]
            v = cache.v[layer, :, :, : start + T]
            # a prefill into an empty cache is plain causal; a later step needs the mask or none
            causal = causal and start == 0 and mask is None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.in_proj = nn.Linear(shape.hidden_size, 4 * shape.hidden_size, bias=shape.bias)
        self.out_proj = nn.Linear(4 * shape.hidden_size, shape.hidden_size, bias=shape.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(F.gelu(self.in_proj(x)))


class Block(nn.Module):
    def __init__(self, shape: GPTShape, causal: bool) -> None:
        super().__init__()
        # The fine model's LayerNorms carry biases even when `bias` is False (as the original).
        norm_bias = shape.bias if causal else True
        self.layernorm_1 = nn.LayerNorm(shape.hidden_size, bias=norm_bias)
        self.attn = SelfAttention(shape, bias=shape.bias)
        self.layernorm_2 = nn.LayerNorm(shape.hidden_size, bias=norm_bias)
        self.mlp = MLP(shape)
        self.causal = causal

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        x = x + self.attn(self.layernorm_1(x), mask, cache, layer, self.causal)
        return x + self.mlp(self.layernorm_2(x))


class CausalGPT(nn.Module):
    """The semantic ("text") and coarse models."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.shape = shape
        self.input_embeds_layer = nn.Embedding(shape.input_vocab_size, shape.hidden_size)
        self.position_embeds_layer = nn.Embedding(shape.block_size, shape.hidden_size)
        self.layers = nn.ModuleList(Block(shape, causal=True) for _ in range(shape.num_layers))
        self.layernorm_final = nn.LayerNorm(shape.hidden_size, bias=shape.bias)
        self.lm_head = nn.Linear(shape.hidden_size, shape.output_vocab_size, bias=False)

    @property
    def device(self) -> torch.device:
        return self.position_embeds_layer.weight.device

    def new_cache(self, batch: int, slots: int, static: bool = False) -> KVCache:
        # the embeddings keep the activation dtype even when the linear layers are int8
        weight = self.position_embeds_layer.weight
        return KVCache(self.shape, batch, slots, weight.device, weight.dtype, static)

    def forward(
        self,
        embeds: torch.Tensor,  # (B, T, C) token embeddings of the new positions
        positions: torch.Tensor,  # (B, T) or (1, T) position ids
        cache: KVCache,
        mask: torch.Tensor | None = None,  # (B, 1, T, S) bool over cache slots
        vocab: slice | None = None,  # only these logits are wanted
    ) -> torch.Tensor:
        """Run the new positions through the model; return the last position's logits (B, V),
        or (B, len(vocab)) for `vocab`."""
        x = embeds + self.position_embeds_layer(positions)
        if cache.static:
            mask = _static_mask(cache, embeds.shape[1], mask)
        for i, block in enumerate(self.layers):
            x = block(x, mask, cache, i)
        cache.length += embeds.shape[1]
        if cache.static:
            cache.filled += embeds.shape[1]
        # like the original, only the last position goes through the head
        h = self.layernorm_final(x[:, -1])
        weight = getattr(self.lm_head, "weight", None)
        if vocab is not None and isinstance(weight, torch.Tensor):
            # The coarse stage reads one codebook's 1,024 logits of 12,096: the other head rows
            # are 9% of a decode step's weight reads. Same values as slicing the full product
            # (each logit is its own dot product; tests/bark_core/test_fast_path.py checks it).
            return F.linear(h, weight[vocab])
        logits = self.lm_head(h)  # an int8 head keeps its weight packed: slice after
        return logits if vocab is None else logits[:, vocab]


def _static_mask(cache: KVCache, T: int, mask: torch.Tensor | None) -> torch.Tensor:
    """(1 or B, 1, T, S): each new position attends to the filled slots up to itself, past its
    row's padding; computed on the device from `cache.filled`, the same shape every step."""
    if mask is not None:
        raise ValueError("a static cache builds its own mask (give it `pads` for a padded batch)")
    slots = torch.arange(cache.slots, device=cache.k.device)
    at = cache.filled + torch.arange(T, device=cache.k.device)
    causal = slots[None, :] <= at[:, None]  # (T, S)
    if cache.pads is None:
        return causal[None, None]
    unpadded = slots[None, :] >= cache.pads[:, None]  # (B, S)
    # padding queries attend to themselves only, so no softmax row is empty (NaN)
    itself = slots[None, :] == at[:, None]
    return ((causal[None] & unpadded[:, None]) | itself[None])[:, None]


class FineGPT(nn.Module):
    """The non-causal fine model: predicts codebook n from codebooks 0..n-1 over 1024 frames."""

    def __init__(self, shape: GPTShape, n_codes_total: int, n_codes_given: int) -> None:
        super().__init__()
        self.shape = shape
        self.n_codes_given = n_codes_given
        self.input_embeds_layers = nn.ModuleList(
            nn.Embedding(shape.input_vocab_size, shape.hidden_size) for _ in range(n_codes_total)
        )
        self.position_embeds_layer = nn.Embedding(shape.block_size, shape.hidden_size)
        self.layers = nn.ModuleList(Block(shape, causal=False) for _ in range(shape.num_layers))
        self.layernorm_final = nn.LayerNorm(shape.hidden_size)
        self.lm_heads = nn.ModuleList(
            nn.Linear(shape.hidden_size, shape.output_vocab_size, bias=False)
            for _ in range(n_codes_given, n_codes_total)
        )
        # tied as in the original: head i predicts codebook i + 1 and embeds it
        for i, head in enumerate(self.lm_heads):
            head.weight = self.input_embeds_layers[i + n_codes_given].weight

    def forward(self, codebook: int, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T, 8) -> logits (B, T, V) for `codebook`, from the embeddings of 0..codebook."""
        T = codes.shape[1]
        x = sum(self.input_embeds_layers[i](codes[:, :, i]) for i in range(codebook + 1))
        x = x + self.position_embeds_layer(torch.arange(T, device=codes.device))
        for i, block in enumerate(self.layers):
            x = block(x, None, None, i)
        return self.lm_heads[codebook - self.n_codes_given](self.layernorm_final(x))


# ----------------------------------------------------------------------------- CPU modes


class PackedLinear(nn.Module):
    """An nn.Linear that also holds its weight as oneDNN reordered it once (CPU, fp32), for
    the skinny matmuls of decode steps.

    aten's linear repacks the weight on every call; with one row per request that is much of
    the work. Measured here (2 AVX2 cores, the 48 linears of a bark-small GPT): batch 8,
    1 thread 57 -> 43 ms, 2 threads 43 -> 23 ms; batch 1, 2 threads 24 -> 18 ms. Wide inputs
    (prefills, the fine model's 1,024 frames) were slower packed, so up to `PACKED_MAX_ROWS`
    rows go the packed way and wider ones through aten with the plain weight (which a
    safetensors checkpoint keeps file-backed). Results differ from aten's in the last bits."""

    PACKED_MAX_ROWS = 64

    def __init__(self, linear: nn.Linear, batch_hint: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), batch_hint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() > self.PACKED_MAX_ROWS * self.in_features:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def cpu_packing_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def pack_linears(model: CausalGPT | FineGPT, batch_hint: int = 8, head: bool = False) -> bool:
    """Swap the linear layers of every block for PackedLinear (fp32 on CPU only), and with
    `head` a causal model's head too (the semantic head is read whole every step; the coarse
    head is sliced per step and the fine heads are tied to embeddings, so those stay).
    Returns False (model unchanged) where this torch has no oneDNN packing."""
    if not cpu_packing_available():
        return False
    if head and isinstance(model, CausalGPT) and isinstance(model.lm_head, nn.Linear):
        model.lm_head = PackedLinear(model.lm_head, batch_hint)  # type: ignore[assignment]
    for block in model.layers:
        assert isinstance(block, Block)
        for parent, name in (
            (block.attn, "att_proj"),
            (block.attn, "out_proj"),
            (block.mlp, "in_proj"),
            (block.mlp, "out_proj"),
        ):
            layer = getattr(parent, name)
            if isinstance(layer, nn.Linear) and layer.weight.dtype == torch.float32:
                setattr(parent, name, PackedLinear(layer, batch_hint))
    return True


PackMode = Literal["on", "off", "auto"]
PACK_MODES: tuple[PackMode, ...] = ("on", "off", "auto")
# auto packs only when packed decode-step linears are at least this much faster: packing
# changes results in the last bits, so a tie (or timer noise) keeps aten's plain linears
PACK_MIN_GAIN = 0.05


@dataclass(frozen=True)
class PackChoice:
    """Whether the CPU linears are packed, and why (the figures auto measured, for the log)."""

    pack: bool
    reason: str
    plain_ms: float | None = None
    packed_ms: float | None = None

    def describe(self) -> str:
        if self.plain_ms is None or self.packed_ms is None:
            return f"packed={self.pack} ({self.reason})"
        return (
            f"packed={self.pack} ({self.reason}: decode-step linears plain {self.plain_ms:.3f} ms, "
            f"packed {self.packed_ms:.3f} ms)"
        )


Measure = Callable[[], tuple[float, float]]  # () -> (plain ms, packed ms)


def measure_linears(model: CausalGPT | FineGPT, batch: int = 8, repeats: int = 15) -> tuple[float, float]:
    """The best time (ms) of one block's four linears on a decode step's input ((batch, 1, C)),
    as aten's plain linears and as PackedLinear, alternated so that both see the same load."""
    block = model.layers[0]
    assert isinstance(block, Block)
    plain: list[nn.Module] = [block.attn.att_proj, block.attn.out_proj, block.mlp.in_proj, block.mlp.out_proj]
    linears = [m for m in plain if isinstance(m, nn.Linear)]
    if len(linears) != len(plain):
        raise ValueError("measure_linears needs the model's plain nn.Linear layers (not yet packed)")
    packed: list[nn.Module] = [PackedLinear(m, batch) for m in linears]
    inputs = [torch.randn(batch, 1, m.in_features) for m in linears]

    def run(layers: list[nn.Module]) -> float:
        t0 = time.perf_counter()
        for layer, x in zip(layers, inputs, strict=True):
            layer(x)
        return (time.perf_counter() - t0) * 1e3

    best = [float("inf"), float("inf")]
    with torch.inference_mode():
        for i in range(repeats + 2):  # the first two rounds warm up
            for k, layers in enumerate((plain, packed)):
                t = run(layers)
                if i >= 2:
                    best[k] = min(best[k], t)
    return best[0], best[1]


def choose_packing(mode: PackMode, model: CausalGPT | FineGPT, measure: Measure | None = None) -> PackChoice:
    """on: pack where possible; off: never; auto: pack only if `measure` (by default
    `measure_linears` on `model`) finds the packed linears faster by PACK_MIN_GAIN."""
    if mode not in PACK_MODES:
        raise ValueError(f"pack mode must be one of {PACK_MODES}, got {mode!r}")
    if mode == "off":
        return PackChoice(False, "off")
    layer = model.layers[0].attn.att_proj  # type: ignore[union-attr]
    fp32_cpu = (
        isinstance(layer, nn.Linear)
        and layer.weight.device.type == "cpu"
        and layer.weight.dtype == torch.float32
    )
    if not (fp32_cpu and cpu_packing_available()):
        return PackChoice(False, "needs plain fp32 linears on a CPU with oneDNN packing")
    if mode == "on":
        return PackChoice(True, "on")
    plain_ms, packed_ms = (measure or (lambda: measure_linears(model)))()
    faster = packed_ms < plain_ms * (1 - PACK_MIN_GAIN)
    reason = "auto: packed faster" if faster else "auto: packed not faster"
    return PackChoice(faster, reason, plain_ms, packed_ms)


def pack_cpu_models(
    mode: PackMode, semantic: CausalGPT, coarse: CausalGPT, fine: FineGPT, measure: Measure | None = None
) -> PackChoice:
    """Choose (measuring on the coarse model, the stage with the most decode steps) and, where
    chosen, pack all three models' block linears and the semantic head (see pack_linears)."""
    choice = choose_packing(mode, coarse, measure)
    if choice.pack:
        pack_linears(semantic, head=True)
        pack_linears(coarse)
        pack_linears(fine)
    return choice


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of every nn.Linear (weights int8 per channel, activations
    quantized per call); a CPU mode for fp32 models. Embeddings, LayerNorms and the KV cache
    stay fp32. Returns the same module, changed in place."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that eager quantization moves to torchao
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 matmuls
    are emulated and several times slower than fp32, so fp32 (or int8) is the better CPU mode."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
