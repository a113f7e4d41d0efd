"""The pipeline end to end on the tiny checkpoint: seeds, streaming, continuity, cancel, WAV."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import soundfile as sf
import torch

from bark_core.audio import wav_bytes
from bark_core.errors import InvalidParameterError, InvalidTextError
from bark_core.params import GenerationParams
from bark_core.pipeline import BarkPipeline, check_precision
from bark_core.types import SynthesisRequest

SAMPLED = GenerationParams(max_duration_s=0.6)  # default temperatures, 30 semantic tokens


def _audio(pipeline: BarkPipeline, text: str, seed: int, params: GenerationParams = SAMPLED) -> np.ndarray:
    return pipeline.synthesize(text, pipeline.voices.get("v2/en_speaker_6"), params, seed=seed)


def test_same_seed_same_audio_other_seed_other_audio(pipeline: BarkPipeline) -> None:
    a = _audio(pipeline, "Hello there.", seed=7)
    b = _audio(pipeline, "Hello there.", seed=7)
    c = _audio(pipeline, "Hello there.", seed=8)
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_sampled_row_in_a_batch_equals_the_row_alone(pipeline: BarkPipeline) -> None:
    """Each row draws from its own generator: its neighbours do not change its audio."""
    requests = [
        SynthesisRequest("Hello there.", pipeline.voices.get("v2/en_speaker_6"), SAMPLED, seed=1),
        SynthesisRequest("Other words here.", None, GenerationParams(max_duration_s=1.0), seed=2),
    ]
    batch = {c.request_index: c.audio for c in pipeline.stream(requests)}
    alone = pipeline.synthesize(requests[0].text, requests[0].voice, SAMPLED, seed=1)
    np.testing.assert_allclose(batch[0], alone, atol=1e-6)


def test_a_request_admitted_mid_batch_catches_up_and_keeps_its_audio(pipeline: BarkPipeline) -> None:
    """B arrives after A's semantic stage: B's semantic runs alone, then A and B share the
    coarse and fine runs; each still gets the audio it gets alone."""
    voice = pipeline.voices.get("v2/en_speaker_6")
    a = SynthesisRequest("Hello there.", voice, SAMPLED, seed=1)
    b = SynthesisRequest("Other words here.", None, SAMPLED, seed=2)
    offered: list[int] = []

    def admit(free: int) -> list[SynthesisRequest]:
        offered.append(free)
        return [b] if len(offered) == 2 else []

    chunks = {c.request_index: c for c in pipeline.stream([a], admit=admit, max_rows=2)}
    # asked while A ran alone, not while two were in flight, and once more when both were done
    assert offered == [1, 1, 2]
    for index, request in enumerate((a, b)):
        assert chunks[index].stage_batch == {"semantic": 1, "coarse": 2, "fine": 2}
        alone = pipeline.synthesize(request.text, request.voice, SAMPLED, seed=request.seed)
        np.testing.assert_allclose(chunks[index].audio, alone, atol=1e-6)


def test_wav_is_24khz_mono_320_samples_per_frame(pipeline: BarkPipeline) -> None:
    request = SynthesisRequest("Hello.", None, SAMPLED, seed=0)
    [chunk] = list(pipeline.stream([request]))
    assert chunk.audio.dtype == np.float32
    assert len(chunk.audio) == chunk.fine.shape[1] * 320
    data, rate = sf.read(io.BytesIO(wav_bytes(chunk.audio)), dtype="int16")
    info = sf.info(io.BytesIO(wav_bytes(chunk.audio)))
    assert (rate, info.channels, info.subtype) == (24_000, 1, "PCM_16")
    assert len(data) == chunk.fine.shape[1] * 320


def test_long_text_streams_chunk_by_chunk(pipeline: BarkPipeline) -> None:
    text = " ".join(f"This is sentence number {i} of a long paragraph that goes on." for i in range(8))
    request = SynthesisRequest(text, None, GenerationParams(max_duration_s=0.3), seed=0)
    stream = pipeline.stream([request])
    first = next(stream)  # the first chunk arrives before the rest is generated
    rest = list(stream)
    chunks = [first, *rest]
    assert first.n_chunks == len(chunks) > 1
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert pipeline.first_chunk_s is not None
    assert chunks[0].estimate_s is not None and chunks[0].estimate_s <= pipeline.first_chunk_s
    assert all(c.estimate_s is not None and c.estimate_s <= pipeline.chunk_target_s for c in chunks)
    assert " ".join(c.text for c in chunks) == text


def test_rolling_continuity_uses_the_previous_generation(
    pipeline: BarkPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "First sentence here. " + "x " * 100 + "Second sentence."
    voice = pipeline.voices.get("v2/en_speaker_6")
    fixed = GenerationParams.greedy(max_duration_s=0.5)
    rolling = GenerationParams.greedy(max_duration_s=0.5, continuity="rolling")
    a = list(pipeline.stream([SynthesisRequest(text, voice, fixed)]))
    b = list(pipeline.stream([SynthesisRequest(text, voice, rolling)]))
    assert len(a) == len(b) >= 2
    np.testing.assert_array_equal(a[0].fine, b[0].fine)  # the same first chunk
    # the second chunk of `rolling` equals a fresh run whose voice is chunk 1's generation
    # (its text planned as one chunk: no short first chunk)
    monkeypatch.setattr(pipeline, "first_chunk_s", None)
    [expected] = list(pipeline.stream([SynthesisRequest(b[1].text, a[0].as_voice(), fixed)]))
    np.testing.assert_array_equal(b[1].fine, expected.fine)


def test_cancel_drops_the_row_within_a_step(pipeline: BarkPipeline) -> None:
    calls = itertools.count()
    cancel_after = 5

    def should_cancel() -> bool:
        return next(calls) >= cancel_after

    requests = [
        SynthesisRequest(
            "A row that gets cancelled.", None, GenerationParams(max_duration_s=2), 0, should_cancel
        ),
        SynthesisRequest("A row that goes on.", None, GenerationParams(max_duration_s=0.4), 1),
    ]
    chunks = list(pipeline.stream(requests))
    assert [c.request_index for c in chunks] == [1]
    assert next(calls) <= cancel_after + 3  # polled once per step, then no more


def test_bfloat16_on_cpu_runs(tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    pipe = BarkPipeline.load(str(tiny_checkpoint), dtype="bfloat16")
    assert pipe.semantic.lm_head.weight.dtype == torch.bfloat16
    audio = pipe.synthesize("Hello.", None, GenerationParams(max_duration_s=0.4))
    assert len(audio) > 0 and np.isfinite(audio).all()


def test_bad_inputs_give_clear_errors(pipeline: BarkPipeline) -> None:
    with pytest.raises(InvalidParameterError, match="float16 is not supported on CPU"):
        check_precision("cpu", "float16")
    with pytest.raises(InvalidParameterError, match="dtype must be one of"):
        check_precision("cpu", "int4")
    with pytest.raises(InvalidTextError, match="empty"):
        list(pipeline.stream([SynthesisRequest(" \n\t ")]))
    for kwargs in [
        {"text_temp": -0.1},
        {"waveform_temp": 2.5},
        {"top_p": 0.0},
        {"top_k": 0},
        {"min_eos_p": 1.5},
        {"max_duration_s": -1},
        {"continuity": "loop"},
    ]:
        with pytest.raises(InvalidParameterError) as err:
            GenerationParams(**kwargs)  # type: ignore[arg-type]
        assert err.value.param == next(iter(kwargs))


def test_max_duration_caps_semantic_tokens() -> None:
    assert GenerationParams(max_duration_s=2.0).max_semantic_tokens == 100  # round(2 * 49.9)
    assert GenerationParams(max_duration_s=100).max_semantic_tokens == 768
    assert GenerationParams().max_semantic_tokens == 768


def test_int8_and_auto_precisions(tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    from bark_core.modules import cpu_has_fast_bf16

    pipe = BarkPipeline.load(str(tiny_checkpoint), dtype="int8")
    assert pipe.dtype == "int8"
    assert "quantized" in type(pipe.coarse.layers[0].mlp.in_proj).__module__
    audio = pipe.synthesize("Hello.", None, GenerationParams(max_duration_s=0.4))
    assert len(audio) > 0 and np.isfinite(audio).all()
    auto = BarkPipeline.load(str(tiny_checkpoint), dtype="auto")
    assert auto.dtype == ("bfloat16" if cpu_has_fast_bf16() else "float32")


def test_tiny_temperatures_mean_greedy() -> None:
    params = GenerationParams(text_temp=3e-208, waveform_temp=1e-4, fine_temp=0.5)
    assert (params.text_temp, params.waveform_temp, params.fine_temp) == (0.0, 0.0, 0.5)
