"""Resuming a request at a chunk (issue 17 part 3): the chunks after it equal an uninterrupted
run's, byte for byte on CPU, given the kept generations of the chunks before it."""

from __future__ import annotations

import numpy as np
import pytest

from bark_core.audio import to_pcm16
from bark_core.errors import InvalidParameterError
from bark_core.params import GenerationParams
from bark_core.pipeline import BarkPipeline
from bark_core.types import AudioChunk, SynthesisRequest

from .test_longform import _histories, _Recorder, _same, paragraph


def _run(pipeline: BarkPipeline, request: SynthesisRequest, rows_per_request: int = 4) -> list[AudioChunk]:
    return list(pipeline.stream([request], rows_per_request=rows_per_request))


@pytest.mark.parametrize(
    ("voice_id", "continuity"),
    [("v2/en_speaker_6", "fixed"), (None, "anchor"), ("v2/en_speaker_6", "anchor"), (None, "rolling")],
)
def test_a_request_resumed_at_chunk_2_continues_as_the_whole_run(
    pipeline: BarkPipeline, voice_id: str | None, continuity: str
) -> None:
    voice = pipeline.voices.get(voice_id) if voice_id else None
    params = GenerationParams(max_duration_s=0.3, continuity=continuity)  # type: ignore[arg-type]
    text = paragraph(3)  # 4 chunks: sentence 0 is split for a short first chunk
    assert pipeline.plan(SynthesisRequest(text)) == pipeline.plan(SynthesisRequest(text))
    whole = _run(pipeline, SynthesisRequest(text, voice, params, seed=21))
    assert [c.chunk_index for c in whole] == [0, 1, 2, 3]
    history = {c.chunk_index: c.as_voice() for c in whole[:2]}
    resumed = _run(pipeline, SynthesisRequest(text, voice, params, seed=21, start_chunk=2, history=history))
    assert [c.chunk_index for c in resumed] == [2, 3]
    assert all(c.n_chunks == 4 for c in resumed)
    for got, want in zip(resumed, whole[2:], strict=True):
        assert to_pcm16(got.audio) == to_pcm16(want.audio)
        for part in ("semantic", "coarse", "fine"):
            np.testing.assert_array_equal(getattr(got, part), getattr(want, part))


@pytest.mark.parametrize(
    ("continuity", "source"), [("fixed", None), ("anchor", 0), ("rolling", 1), ("rolling", 2)]
)
def test_resumed_chunks_have_the_history_of_the_whole_run(
    pipeline: BarkPipeline, monkeypatch: pytest.MonkeyPatch, continuity: str, source: int | None
) -> None:
    """Every stage of the resumed chunks was given the kept generation the mode names (the
    tiny random model's tokens hardly depend on their history, so the audio alone cannot
    tell): anchor chunk 0's, rolling the previous chunk's, fixed the preset."""
    voice = pipeline.voices.get("v2/en_speaker_6")
    params = GenerationParams(max_duration_s=0.3, continuity=continuity)  # type: ignore[arg-type]
    text = paragraph(3)
    whole = _run(pipeline, SynthesisRequest(text, voice, params, seed=3), rows_per_request=1)
    start = 2 if source != 2 else 3
    history = {c.chunk_index: c.as_voice() for c in whole[:start]}
    recorder = _Recorder(monkeypatch)
    _run(pipeline, SynthesisRequest(text, voice, params, seed=3, start_chunk=start, history=history), 1)
    want = voice if source is None else whole[source].as_voice()
    first_resumed = {stage: rows[0][1] for stage, rows in recorder.rows.items()}
    assert len(recorder.rows["semantic"]) == 4 - start  # only the chunks after start ran
    for stage, got in first_resumed.items():
        assert _same(got, _histories(want)[stage]), stage


def test_resuming_at_the_end_yields_nothing_and_bad_starts_are_refused(pipeline: BarkPipeline) -> None:
    params = GenerationParams(max_duration_s=0.3, continuity="rolling")
    text = paragraph(2)  # 3 chunks
    whole = _run(pipeline, SynthesisRequest(text, None, params, seed=5))
    history = {c.chunk_index: c.as_voice() for c in whole}
    assert _run(pipeline, SynthesisRequest(text, None, params, seed=5, start_chunk=3, history=history)) == []
    with pytest.raises(InvalidParameterError) as err:
        _run(pipeline, SynthesisRequest(text, None, params, seed=5, start_chunk=4, history=history))
    assert err.value.param == "start_chunk"
    with pytest.raises(InvalidParameterError) as err:
        _run(
            pipeline,
            SynthesisRequest(text, None, params, seed=5, start_chunk=2, history={0: whole[0].as_voice()}),
        )
    assert err.value.param == "history"
