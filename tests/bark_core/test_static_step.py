"""The static-shape decode step (a fixed-size cache attended through a slot mask, written at a
device-side counter): on CPU it gives today's logits to float tolerance and the same tokens,
and every decode step has the same attention shapes (what a CUDA graph capture needs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bark_core import modules, stages


def _steps(model, static: bool, n: int = 12) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    prefix = torch.randn(2, 9, model.shape.hidden_size)
    tokens = torch.randint(0, 10_000, (n, 2, 1))
    cache = model.new_cache(2, 9 + n, static=static)
    with torch.inference_mode():
        out = [model(prefix, torch.arange(9)[None], cache)]
        for t in tokens:
            pos = cache.filled.view(1, 1) if static else torch.full((1, 1), cache.length)
            out.append(model(model.input_embeds_layer(t), pos, cache))
    return out


def test_static_steps_give_the_dynamic_logits(pipeline) -> None:  # type: ignore[no-untyped-def]
    for a, b in zip(_steps(pipeline.semantic, False), _steps(pipeline.semantic, True), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_static_semantic_stage_gives_the_same_tokens(pipeline) -> None:  # type: ignore[no-untyped-def]
    text = [pipeline.encode_text(t) for t in ("Hello there.", "Another line of text here.")]
    voice = pipeline.voices.get("v2/en_speaker_6")

    def run(static: bool) -> list[np.ndarray | None]:
        controls = [
            stages.RowControl(temp=0.0),
            stages.RowControl(temp=0.7, generator=torch.Generator().manual_seed(3)),
        ]
        return stages.generate_semantic(
            pipeline.semantic,
            text,
            [voice.semantic, None],
            controls,
            [None, 0.2],
            [40, 40],
            static_shapes=static,
        )

    for a, b in zip(run(False), run(True), strict=True):
        np.testing.assert_array_equal(a, b)


def test_every_static_decode_step_has_the_same_shapes(pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    shapes: list[tuple] = []
    sdpa = modules.F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):  # type: ignore[no-untyped-def]
        shapes.append((q.shape, k.shape, None if kwargs["attn_mask"] is None else kwargs["attn_mask"].shape))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(modules.F, "scaled_dot_product_attention", spy)
    _steps(pipeline.semantic, True)
    decode = shapes[len(pipeline.semantic.layers) :]  # after the prefill's
    assert len(decode) == 12 * len(pipeline.semantic.layers) and len(set(decode)) == 1
    shapes.clear()
    _steps(pipeline.semantic, False)
    assert len(set(shapes[len(pipeline.semantic.layers) :])) == 12  # the dynamic cache grows each step


def test_a_static_cache_does_not_grow(pipeline) -> None:  # type: ignore[no-untyped-def]
    cache = pipeline.semantic.new_cache(1, 4, static=True)
    with pytest.raises(ValueError, match="keeps its size"):
        cache.reserve(8)
