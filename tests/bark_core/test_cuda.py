"""fp16 / bf16 and CPU offload on CUDA. Skipped where no GPU is visible (CI has none)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bark_core.params import GenerationParams
from bark_core.pipeline import BarkPipeline
from bark_core.types import SynthesisRequest

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("offload", [False, True])
def test_half_precision_with_and_without_offload(tiny_checkpoint, dtype: str, offload: bool) -> None:  # type: ignore[no-untyped-def]
    pipe = BarkPipeline.load(str(tiny_checkpoint), device="cuda", dtype=dtype, offload=offload)
    home = "cpu" if offload else "cuda"
    assert pipe.semantic.lm_head.weight.device.type == home
    voice = pipe.voices.get("v2/en_speaker_6")
    [chunk] = list(
        pipe.stream([SynthesisRequest("Hello there.", voice, GenerationParams(max_duration_s=1), 1)])
    )
    assert chunk.fine.shape == (8, 75) and np.isfinite(chunk.audio).all()
    # offloaded stages are back on the CPU after use
    assert pipe.coarse.lm_head.weight.device.type == home


def test_cuda_greedy_tokens_match_cpu_fp32(pipeline, tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    gpu = BarkPipeline.load(str(tiny_checkpoint), device="cuda", dtype="float32")
    request = SynthesisRequest("Hello there.", None, GenerationParams.greedy(max_duration_s=1), 0)
    [a] = list(pipeline.stream([request]))
    [b] = list(gpu.stream([request]))
    # TF32 and kernel choice may flip a rare near-tie; the semantic stage must agree
    assert a.semantic.shape == b.semantic.shape  # the cap, as the random model never ends
    assert (a.semantic == b.semantic).mean() > 0.9


def test_cuda_batch_with_padding_filters_and_sampling(pipeline, tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    """Batch 3 on the GPU: rows of different lengths (padded, masked coarse windows), a voice,
    top-k / top-p, greedy beside sampled rows. The same seeds give the same tokens again on
    the GPU; greedy rows agree with the CPU's."""
    gpu = BarkPipeline.load(str(tiny_checkpoint), device="cuda", dtype="float32")
    voice = gpu.voices.get("v2/en_speaker_6")
    requests = [
        SynthesisRequest("Hello there.", voice, GenerationParams(max_duration_s=1.0, top_k=50, top_p=0.9), 1),
        SynthesisRequest("A longer line of text.", None, GenerationParams.greedy(max_duration_s=1.5), 2),
        SynthesisRequest("Hi.", None, GenerationParams(max_duration_s=0.5), 3),
    ]
    first = {c.request_index: c for c in gpu.stream(requests)}
    again = {c.request_index: c for c in gpu.stream(requests)}
    cpu = {c.request_index: c for c in pipeline.stream(requests)}
    for i in range(3):
        assert first[i].fine.shape == (8, first[i].coarse.shape[1]) and np.isfinite(first[i].audio).all()
        np.testing.assert_array_equal(first[i].fine, again[i].fine)
    assert first[1].semantic.shape == cpu[1].semantic.shape
    assert (first[1].semantic == cpu[1].semantic).mean() > 0.9


def test_cuda_graphs_replay_the_same_static_steps(tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    """Decode steps replayed as CUDA graphs (the default on CUDA) give the tokens of the same
    static-shape steps launched eagerly, in a batch whose rows leave at different times (a new
    graph per batch size); and graphs were captured and replayed."""
    graphed = BarkPipeline.load(str(tiny_checkpoint), device="cuda", dtype="float16")
    eager = BarkPipeline.load(str(tiny_checkpoint), device="cuda", dtype="float16", cuda_graphs=False)
    eager.static_shapes = True
    assert graphed.graphs is not None and graphed.static_shapes and eager.graphs is None
    voice = graphed.voices.get("v2/en_speaker_6")
    requests = [
        SynthesisRequest("Hello there.", voice, GenerationParams(max_duration_s=1.5, top_k=50), 1),
        SynthesisRequest("A longer line of text.", None, GenerationParams.greedy(max_duration_s=1.0), 2),
        SynthesisRequest("Hi.", None, GenerationParams(max_duration_s=0.4), 3),
    ]
    a = {c.request_index: c for c in graphed.stream(requests)}
    b = {c.request_index: c for c in eager.stream(requests)}
    for i in range(3):
        np.testing.assert_array_equal(a[i].semantic, b[i].semantic)
        np.testing.assert_array_equal(a[i].coarse, b[i].coarse)
        np.testing.assert_array_equal(a[i].fine, b[i].fine)
    assert graphed.graphs.captured >= 4 and graphed.graphs.replayed > 100
