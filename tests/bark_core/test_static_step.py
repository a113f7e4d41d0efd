"""The static-shape decode step (a fixed-size cache attended through a slot mask, written at a
device-side counter): on CPU it gives today's logits to float tolerance and the same tokens,
and every decode step has the same attention shapes (what a CUDA graph capture needs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bark_core import modules, stages
from bark_core.decode_step import Graphs


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


def _coarse(pipeline, static: bool) -> list[np.ndarray | None]:  # type: ignore[no-untyped-def]
    """Three rows: a long voice history (windows slide: the static cache is refilled), none
    (windows extend the cache), a short row that leaves the batch in its second window."""
    voice = pipeline.voices.get("v2/en_speaker_6")
    rng = np.random.default_rng(0)
    semantic = [rng.integers(0, 10_000, n) for n in (130, 110, 30)]
    controls = [
        stages.RowControl(temp=0.0),
        stages.RowControl(temp=0.7, top_k=50, generator=torch.Generator().manual_seed(5)),
        stages.RowControl(temp=0.7, top_p=0.9, generator=torch.Generator().manual_seed(6)),
    ]
    histories = [(voice.semantic, voice.coarse), None, (voice.semantic, voice.coarse)]
    return stages.generate_coarse(pipeline.coarse, semantic, histories, controls, static_shapes=static)


def test_static_coarse_stage_gives_the_same_codes(pipeline) -> None:  # type: ignore[no-untyped-def]
    dynamic, static = _coarse(pipeline, False), _coarse(pipeline, True)
    assert [c.shape for c in dynamic] == [(2, 195), (2, 165), (2, 45)]  # type: ignore[union-attr]
    for a, b in zip(dynamic, static, strict=True):
        np.testing.assert_array_equal(a, b)


def test_every_static_coarse_decode_step_of_a_batch_has_the_same_shapes(pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Decode steps (one query) of the same batch size attend over the same slots with the same
    mask shape, across windows; the dynamic cache's grow."""
    steps: dict[int, set[tuple]] = {}
    sdpa = modules.F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):  # type: ignore[no-untyped-def]
        if q.shape[2] == 1:
            mask = kwargs["attn_mask"]
            steps.setdefault(q.shape[0], set()).add((k.shape, None if mask is None else mask.shape))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(modules.F, "scaled_dot_product_attention", spy)
    _coarse(pipeline, True)
    assert sorted(steps) == [1, 2, 3] and all(len(shapes) == 1 for shapes in steps.values())
    [(k_shape, _)] = steps[3]
    assert k_shape[2] == stages.COARSE_STATIC_SLOTS
    steps.clear()
    _coarse(pipeline, False)
    assert len(steps[3]) > 50


def test_the_static_pipeline_gives_the_same_audio(pipeline) -> None:  # type: ignore[no-untyped-def]
    from bark_core.params import GenerationParams
    from bark_core.types import SynthesisRequest

    voice = pipeline.voices.get("v2/en_speaker_6")
    requests = [
        SynthesisRequest("Hello there.", voice, GenerationParams(max_duration_s=1.2), 4),
        SynthesisRequest("Another line.", None, GenerationParams(max_duration_s=0.6), 5),
    ]
    dynamic = [c.audio for c in pipeline.stream(requests)]
    pipeline.static_shapes = True
    try:
        static = [c.audio for c in pipeline.stream(requests)]
    finally:
        pipeline.static_shapes = False
    assert len(dynamic) == len(static) == 2
    for a, b in zip(dynamic, static, strict=True):
        np.testing.assert_array_equal(a, b)


def test_graphs_on_cpu_run_the_same_step_uncaptured(pipeline) -> None:  # type: ignore[no-untyped-def]
    graphs = Graphs()
    text = [pipeline.encode_text("Hello there.")]
    controls = [stages.RowControl(temp=0.0)]
    args = (pipeline.semantic, text, [None], controls, [None], [20])
    with_graphs, plain = stages.generate_semantic(*args, graphs=graphs), stages.generate_semantic(*args)
    np.testing.assert_array_equal(with_graphs[0], plain[0])
    assert graphs.captured == graphs.replayed == 0
