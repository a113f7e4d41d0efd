"""The fast path gives the same tokens as the plain one: coarse cache reuse across windows,
one argmax per step for greedy rows, int8 linears as a working (approximate) CPU mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bark_core import stages
from bark_core.modules import KVCache, quantize_int8
from bark_core.sampling import BatchSampling, sample_batch
from bark_core.voices import VoicePreset


class _Prefills:
    """Counts the forward calls of a model that feed more than one position."""

    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        self.model, self.forward, self.widths = model, model.forward, []

    def __enter__(self) -> _Prefills:
        def spy(embeds, *args, **kwargs):  # type: ignore[no-untyped-def]
            if embeds.shape[1] > 1:
                self.widths.append(embeds.shape[1])
            return self.forward(embeds, *args, **kwargs)

        self.model.forward = spy
        return self

    def __exit__(self, *exc: object) -> None:
        del self.model.forward


def _short_voice(rng: np.random.Generator) -> VoicePreset:
    """A history short enough that the coarse windows keep their start for a while."""
    return VoicePreset(
        semantic=rng.integers(0, 10_000, 24),
        coarse=rng.integers(0, 1024, (2, 36)),
        fine=rng.integers(0, 1024, (8, 36)),
    )


def _coarse(pipeline, semantic, voices, reuse):  # type: ignore[no-untyped-def]
    histories = [(v.semantic, v.coarse) if v is not None else None for v in voices]
    controls = [stages.RowControl(temp=0.0) for _ in semantic]
    with _Prefills(pipeline.coarse) as spy:
        out = stages.generate_coarse(pipeline.coarse, semantic, histories, controls, reuse_cache=reuse)
    return out, spy.widths


def test_coarse_cache_reuse_gives_the_tokens_of_a_prefill_per_window(pipeline):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    semantic = [rng.integers(0, 10_000, 100)]  # 300 coarse steps: five 60-step windows
    reused, reused_widths = _coarse(pipeline, semantic, [None], reuse=True)
    plain, plain_widths = _coarse(pipeline, semantic, [None], reuse=False)
    np.testing.assert_array_equal(reused[0], plain[0])
    assert len(plain_widths) == 5
    assert reused_widths == plain_widths[:1]  # later windows feed only their one new token


def test_coarse_cache_reuse_in_a_padded_batch_equals_each_row_alone(pipeline):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    semantic = [rng.integers(0, 10_000, n) for n in (100, 60, 80)]
    voices = [None, _short_voice(rng), None]  # the voiced row is longer: the others are padded
    batch, widths = _coarse(pipeline, semantic, voices, reuse=True)
    assert len(widths) == 1
    plain, _ = _coarse(pipeline, semantic, voices, reuse=False)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], plain[i])
        [alone], _ = _coarse(pipeline, semantic[i : i + 1], voices[i : i + 1], reuse=True)
        np.testing.assert_array_equal(batch[i], alone)


def test_coarse_with_a_full_voice_history_prefills_every_window(pipeline):  # type: ignore[no-untyped-def]
    voice = pipeline.voices.get("v2/en_speaker_6")
    semantic = [np.random.default_rng(2).integers(0, 10_000, 100)]
    reused, widths = _coarse(pipeline, semantic, [voice], reuse=True)
    plain, _ = _coarse(pipeline, semantic, [voice], reuse=False)
    np.testing.assert_array_equal(reused[0], plain[0])
    assert len(widths) == 5  # the window start moves with the history: nothing to keep


def test_window_extends() -> None:
    held = np.array([1, 2, 3])
    assert stages.window_extends(held, np.array([1, 2, 3, 4]))
    assert not stages.window_extends(held, np.array([1, 2, 3]))
    assert not stages.window_extends(held, np.array([2, 3, 4, 5]))


def test_cache_reserve_keeps_what_is_filled() -> None:
    from bark_core.modules import GPTShape

    shape = GPTShape(64, 10, 10, 2, 2, 8, False)
    cache = KVCache(shape, 3, 5, "cpu", torch.float32)
    cache.k.normal_()
    before = cache.k.clone()
    cache.reserve(9)
    assert cache.slots == 9
    torch.testing.assert_close(cache.k[:, :, :, :5], before)
    cache.reserve(4)
    assert cache.slots == 9


def test_greedy_rows_take_the_argmax_in_the_batched_pass() -> None:
    """Greedy rows take the argmax and draw nothing; the sampled row beside them draws."""
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    gens = [torch.Generator().manual_seed(0) for _ in range(3)]
    s = BatchSampling.build([0.0, 1.0, 0.0], [None] * 3, [None] * 3, gens, "cpu", 3)
    index, eos_p = sample_batch(logits, s, [0, 1, 2])
    assert index[[0, 2]].tolist() == [1, 2] and eos_p[[0, 2]].tolist() == [0.0, 1.0]
    untouched = torch.Generator().manual_seed(0).get_state()
    assert torch.equal(gens[0].get_state(), untouched) and torch.equal(gens[2].get_state(), untouched)
    assert not torch.equal(gens[1].get_state(), untouched)


def test_int8_models_run_every_stage(tiny_checkpoint):  # type: ignore[no-untyped-def]
    """int8 is approximate, so only its shapes and ranges are checked; its agreement with
    fp32 is measured by benchmarks/pipeline_bench.py."""
    from bark_core.params import GenerationParams
    from bark_core.pipeline import BarkPipeline
    from bark_core.types import SynthesisRequest

    pipe = BarkPipeline.load(str(tiny_checkpoint))
    for model in (pipe.semantic, pipe.coarse, pipe.fine):
        quantize_int8(model)
    assert "quantized.dynamic" in type(pipe.coarse.lm_head).__module__
    params = GenerationParams.greedy(max_duration_s=0.5)
    [chunk] = list(pipe.stream([SynthesisRequest("Hello.", pipe.voices.get("v2/en_speaker_1"), params)]))
    assert chunk.semantic.shape == (25,)
    assert chunk.fine.shape[0] == 8 and chunk.fine.shape[1] == chunk.coarse.shape[1] > 0
    assert chunk.fine.max() < 1024 and np.isfinite(chunk.audio).all()


def test_head_slice_gives_the_full_heads_logits(pipeline):  # type: ignore[no-untyped-def]
    """The coarse stage computes only one codebook's rows of the head: same values, bit for
    bit, as the full head sliced afterwards, at batch 1 and 3."""
    model = pipeline.coarse
    vocab = slice(10_000 + 1024, 10_000 + 2048)
    torch.manual_seed(0)
    for batch in (1, 3):
        embeds = torch.randn(batch, 5, model.shape.hidden_size)
        positions = torch.arange(5)[None]
        with torch.inference_mode():
            full = model(embeds, positions, model.new_cache(batch, 5))
            part = model(embeds, positions, model.new_cache(batch, 5), vocab=vocab)
        assert part.shape == (batch, 1024)
        assert torch.equal(part, full[:, vocab])


def test_cpu_fp32_linears_are_packed_and_agree_with_aten(pipeline, tiny_checkpoint):  # type: ignore[no-untyped-def]
    from bark_core.modules import PackedLinear, cpu_packing_available
    from bark_core.pipeline import BarkPipeline

    if not cpu_packing_available():
        pytest.skip("this torch has no oneDNN weight packing")
    plain = BarkPipeline.load(str(tiny_checkpoint), pack=False)
    # every block's four linears; the semantic head too (the coarse one is sliced per step)
    for ours, theirs, heads in (
        (pipeline.semantic, plain.semantic, 1),
        (pipeline.coarse, plain.coarse, 0),
        (pipeline.fine, plain.fine, 0),
    ):
        packed = [m for m in ours.modules() if isinstance(m, PackedLinear)]
        assert len(packed) == 4 * len(ours.layers) + heads
        assert not any(isinstance(m, PackedLinear) for m in theirs.modules())
    torch.manual_seed(0)
    codes = torch.randint(0, 1024, (2, 1024, 8))
    with torch.inference_mode():
        a, b = pipeline.fine(3, codes), plain.fine(3, codes)
        embeds = torch.randn(3, 7, pipeline.semantic.shape.hidden_size)
        pos = torch.arange(7)[None]
        c = pipeline.semantic(embeds, pos, pipeline.semantic.new_cache(3, 7))
        d = plain.semantic(embeds, pos, plain.semantic.new_cache(3, 7))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(c, d, rtol=1e-4, atol=1e-4)
