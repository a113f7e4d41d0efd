"""Long-form requests on the tiny checkpoint: anchor continuity, a request's chunks in
parallel (byte-identical to one at a time), chunks out in order, fair rows, joins, demo cap."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from bark_core import stages
from bark_core.audio import to_pcm16
from bark_core.constants import SAMPLES_PER_FRAME
from bark_core.errors import InvalidParameterError
from bark_core.longform import chunk_seed
from bark_core.params import GenerationParams, resolve_continuity, semantic_tokens_for
from bark_core.pipeline import BarkPipeline
from bark_core.scheduler import StageQueues
from bark_core.seams import FADE_S, pause_samples
from bark_core.types import AudioChunk, SynthesisRequest
from bark_core.voices import VoicePreset

# Every sentence is too long to share a chunk with another: one chunk (or more) each.
SENTENCE = (
    "Sentence {i} is long enough that two of them never fit into one chunk, "
    "so every one of them is planned as a chunk of its own."
)


def paragraph(n: int, offset: int = 0) -> str:
    return " ".join(SENTENCE.format(i=i + offset) for i in range(n))


SAMPLED = GenerationParams(max_duration_s=0.3)  # default temperatures, 15 semantic tokens
GREEDY = GenerationParams.greedy(max_duration_s=0.3)


def _pcm(chunks: Sequence[AudioChunk]) -> list[bytes]:
    return [to_pcm16(c.audio) for c in sorted(chunks, key=lambda c: c.chunk_index)]


def _by_request(chunks: Sequence[AudioChunk]) -> dict[int, list[AudioChunk]]:
    out: dict[int, list[AudioChunk]] = {}
    for c in chunks:
        out.setdefault(c.request_index, []).append(c)
    return out


# ----------------------------------------------------------------------------- anchor


class _Recorder:
    """Wraps the three stages functions and records, per stage, each row's input and history."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: dict[str, list[tuple[Any, Any]]] = {"semantic": [], "coarse": [], "fine": []}
        for stage in self.rows:
            name = f"generate_{stage}"
            monkeypatch.setattr(stages, name, self._wrap(stage, getattr(stages, name)))

    def _wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(model: Any, inputs: Any, histories: Any, *args: Any, **kwargs: Any) -> Any:
            self.rows[stage].extend(zip(inputs, histories, strict=True))
            return fn(model, inputs, histories, *args, **kwargs)

        return wrapped


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(np.array_equal(a, b))


def _histories(voice: VoicePreset | None) -> dict[str, Any]:
    if voice is None:
        return {"semantic": None, "coarse": None, "fine": None}
    return {"semantic": voice.semantic, "coarse": (voice.semantic, voice.coarse), "fine": voice.fine}


def _stage_inputs(pipeline: BarkPipeline, c: AudioChunk) -> dict[str, Any]:
    return {"semantic": pipeline.encode_text(c.text), "coarse": c.semantic, "fine": c.coarse}


def _alone(pipeline: BarkPipeline, text: str, history: VoicePreset, params: GenerationParams) -> list[Any]:
    """bark_core run on one chunk with a given history: the three stages, greedy."""
    ctl = [stages.RowControl(temp=0.0)]
    [semantic] = stages.generate_semantic(
        pipeline.semantic,
        [pipeline.encode_text(text)],
        [history.semantic],
        ctl,
        [params.min_eos_p],
        [params.max_semantic_tokens],
    )
    assert semantic is not None
    [coarse] = stages.generate_coarse(pipeline.coarse, [semantic], [(history.semantic, history.coarse)], ctl)
    assert coarse is not None
    [fine] = stages.generate_fine(pipeline.fine, [coarse], [history.fine], ctl)
    return [semantic, coarse, fine]


@pytest.mark.parametrize(
    ("voice_id", "continuity"), [("v2/en_speaker_6", "anchor"), (None, "anchor"), (None, None)]
)
def test_anchor_conditions_every_later_chunk_on_chunk_0(
    pipeline: BarkPipeline, monkeypatch: pytest.MonkeyPatch, voice_id: str | None, continuity: str | None
) -> None:
    """Without a preset the default is anchor too (the (None, None) case)."""
    voice = pipeline.voices.get(voice_id) if voice_id else None
    params = GenerationParams.greedy(max_duration_s=0.3, continuity=continuity)  # type: ignore[arg-type]
    recorder = _Recorder(monkeypatch)
    chunks = list(pipeline.stream([SynthesisRequest(paragraph(4), voice, params)]))
    assert len(chunks) >= 4
    first, later = chunks[0], chunks[1:]
    anchor = first.as_voice()
    assert first.coarse.shape[1] > 0
    for stage, rows in recorder.rows.items():
        assert len(rows) == len(chunks)
        # chunk 0 ran first, alone, with the preset (or none)
        assert _same(rows[0][0], _stage_inputs(pipeline, first)[stage])
        assert _same(rows[0][1], _histories(voice)[stage])
        # every other row had chunk 0's generation as its history, and they were the later chunks
        assert all(_same(history, _histories(anchor)[stage]) for _, history in rows[1:])
        for c in later:
            assert any(_same(inp, _stage_inputs(pipeline, c)[stage]) for inp, _ in rows[1:])
    monkeypatch.undo()
    for c in later:
        expected = _alone(pipeline, c.text, anchor, params)
        for got, want in zip([c.semantic, c.coarse, c.fine], expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_continuity_defaults_and_errors() -> None:
    assert resolve_continuity(None, has_voice=True) == "fixed"
    assert resolve_continuity(None, has_voice=False) == "anchor"
    assert resolve_continuity("rolling", has_voice=False) == "rolling"
    assert GenerationParams(continuity="anchor").continuity == "anchor"
    for kwargs in [{"continuity": "loop"}, {"chunk_pause_s": -0.1}, {"chunk_pause_s": 6.0}]:
        with pytest.raises(InvalidParameterError) as err:
            GenerationParams(**kwargs)  # type: ignore[arg-type]
        assert err.value.param == next(iter(kwargs))


# ----------------------------------------------------------------------------- seeds


@pytest.mark.parametrize(("voice_id", "continuity"), [("v2/en_speaker_6", "fixed"), (None, "anchor")])
def test_a_seed_gives_byte_identical_audio_alone_batched_sequential_parallel(
    pipeline: BarkPipeline, voice_id: str | None, continuity: str
) -> None:
    voice = pipeline.voices.get(voice_id) if voice_id else None
    params = GenerationParams(max_duration_s=0.3, continuity=continuity)  # type: ignore[arg-type]
    mine = SynthesisRequest(paragraph(5), voice, params, seed=11)
    others = [
        SynthesisRequest(paragraph(3, offset=7), None, SAMPLED, seed=3),
        SynthesisRequest("A short one.", pipeline.voices.get("v2/de_speaker_3"), SAMPLED, seed=4),
    ]
    runs = {
        "alone, one at a time": _pcm(list(pipeline.stream([mine], rows_per_request=1))),
        "alone, parallel": _pcm(list(pipeline.stream([mine]))),
        "batched, parallel": _pcm(_by_request(list(pipeline.stream([others[0], mine, others[1]])))[1]),
        "batched, one at a time": _pcm(
            _by_request(list(pipeline.stream([mine, *others], rows_per_request=1, max_rows=3)))[0]
        ),
    }
    reference = runs.pop("alone, one at a time")
    assert len(reference) >= 5
    assert len(set(reference)) == len(reference)  # the chunks differ from each other
    for name, pcm in runs.items():
        assert pcm == reference, name
    other_seed = _pcm(list(pipeline.stream([SynthesisRequest(mine.text, voice, params, seed=12)])))
    assert all(a != b for a, b in zip(other_seed, reference, strict=True))


def test_chunk_seeds_are_distinct_and_chunk_0_keeps_the_seed() -> None:
    assert chunk_seed(7, 0) == 7
    seeds = {chunk_seed(seed, k) for seed in range(20) for k in range(1, 20)}
    assert len(seeds) == 19 * 20
    assert chunk_seed(7, 3) == chunk_seed(7, 3)
    assert chunk_seed(-1, 3) == chunk_seed(2**64 - 1, 3)  # as torch.manual_seed wraps it


# ----------------------------------------------------------------------------- order, fairness


class _LaterFirst(StageQueues[Any]):
    """Hands the codec its chunks in reverse order: later chunks finish first."""

    def take(self) -> tuple[str, list[Any]] | None:
        taken = super().take()
        if taken is not None and taken[0] == "codec":
            return "codec", taken[1][::-1]
        return taken


def test_chunks_leave_in_order_while_later_chunks_finish_first(
    pipeline: BarkPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bark_core.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "StageQueues", _LaterFirst)
    decoded: list[int] = []
    decode = pipeline.audio_chunk

    def spy(chunk: Any) -> AudioChunk:
        decoded.append(chunk.index)
        return decode(chunk)

    monkeypatch.setattr(pipeline, "audio_chunk", spy)
    voice = pipeline.voices.get("v2/en_speaker_6")
    stream = pipeline.stream([SynthesisRequest(paragraph(5), voice, SAMPLED, seed=1)])
    seen: list[tuple[int, int]] = []  # (chunk index, chunks decoded when it arrived)
    for c in stream:
        seen.append((c.chunk_index, len(decoded)))
    n = len(seen)
    assert [index for index, _ in seen] == list(range(n)) and n >= 5
    assert decoded != sorted(decoded)  # later chunks were decoded before earlier ones
    assert sorted(decoded) == list(range(n))
    # chunk 1 could only leave once every chunk decoded before it had been
    assert seen[1][1] == decoded.index(1) + 1


def _stream_with_late_arrival(
    pipeline: BarkPipeline, long: SynthesisRequest, short: SynthesisRequest, **kwargs: Any
) -> Iterator[AudioChunk]:
    """Admit `short` on the second stage run after the long request's first chunk arrived
    (by then its later chunks hold every row)."""
    state = {"arrived": False, "asked": 0, "admitted": False}

    def admit(free: int) -> list[SynthesisRequest]:
        if not state["arrived"] or state["admitted"]:
            return []
        state["asked"] += 1
        if state["asked"] < 2:
            return []
        state["admitted"] = True
        return [short]

    for c in pipeline.stream([long], admit=admit, **kwargs):
        state["arrived"] = True
        yield c


def test_a_short_request_admitted_later_starts_before_the_long_one_finishes(pipeline: BarkPipeline) -> None:
    long = SynthesisRequest(paragraph(6), pipeline.voices.get("v2/en_speaker_6"), SAMPLED, seed=1)
    short = SynthesisRequest("Short.", None, SAMPLED, seed=2)
    chunks = list(_stream_with_late_arrival(pipeline, long, short, max_rows=2, rows_per_request=2))
    order = [(c.request_index, c.chunk_index) for c in chunks]
    n_long = chunks[0].n_chunks
    assert n_long >= 6 and len(order) == n_long + 1
    # the long request held both rows when the short one came (chunks 1 and 2 ran together),
    # and the next free rows went one to each: the short one ran beside the long one's chunk 3
    assert order.index((1, 0)) < order.index((0, 4))
    short_chunk = chunks[order.index((1, 0))]
    assert short_chunk.stage_batch["semantic"] == 2
    assert chunks[order.index((0, 1))].stage_batch["semantic"] == 2


def test_rows_per_request_caps_a_requests_rows(pipeline: BarkPipeline) -> None:
    voice = pipeline.voices.get("v2/en_speaker_6")
    request = SynthesisRequest(paragraph(5), voice, SAMPLED, seed=1)
    one = list(pipeline.stream([request], rows_per_request=1))
    three = list(pipeline.stream([request], rows_per_request=3))
    assert {c.stage_batch["semantic"] for c in one} == {1}
    assert max(c.stage_batch["semantic"] for c in three) == 3
    rolling = GenerationParams(max_duration_s=0.3, continuity="rolling")
    sequential = list(pipeline.stream([SynthesisRequest(request.text, voice, rolling, seed=1)]))
    assert {c.stage_batch["semantic"] for c in sequential} == {1}  # rolling stays sequential
    with pytest.raises(InvalidParameterError):
        list(pipeline.stream([request], rows_per_request=0))


# ----------------------------------------------------------------------------- joins


@pytest.mark.parametrize("pause_s", [0.25, 0.5, 0.0])
def test_chunks_join_with_a_pause_and_no_step_at_the_seam(pipeline: BarkPipeline, pause_s: float) -> None:
    params = GenerationParams(max_duration_s=0.3, chunk_pause_s=pause_s)
    chunks = list(pipeline.stream([SynthesisRequest(paragraph(3), None, params, seed=5)]))
    assert len(chunks) >= 3
    gap = pause_samples(pause_s)
    assert gap == round(pause_s * 24_000)
    fade = round(FADE_S * 24_000)
    raw_edges = []
    for c in chunks:
        speech = len(c.audio) - (gap if c.chunk_index else 0)
        assert speech == c.fine.shape[1] * SAMPLES_PER_FRAME
        assert c.pause_s == (pause_s if c.chunk_index else 0.0)
        assert c.duration_s == pytest.approx(c.pause_s + speech / 24_000)
        if c.chunk_index:
            assert not c.audio[:gap].any()  # exactly `pause_s` of silence opens it
        raw = pipeline.decode(c.fine)
        raw_edges += [abs(raw[0]), abs(raw[-1])]
        out = c.audio[gap if c.chunk_index else 0 :]
        assert out[0] == 0.0 and out[-1] == 0.0
        np.testing.assert_allclose(out[fade:-fade], raw[fade:-fade])  # only the edges change
        # a smooth ramp: within the fade each sample is at most its raw value times pi*i/(2n)
        envelope = np.pi * np.arange(fade) / (2 * fade)
        assert (np.abs(out[:fade]) <= np.abs(raw[:fade]) * envelope + 1e-7).all()
        assert (np.abs(out[::-1][:fade]) <= np.abs(raw[::-1][:fade]) * envelope + 1e-7).all()
    assert max(raw_edges) > 0.01  # unfaded, some edge would step (click)
    joined = np.concatenate([c.audio for c in chunks])
    ends = np.cumsum([len(c.audio) for c in chunks])[:-1]
    # where one chunk ends, and where the next one's speech starts after its pause
    for join in [*ends, *(ends + gap)]:
        assert np.abs(np.diff(joined[join - 4 : join + 4])).max() < 1e-3


# ----------------------------------------------------------------------------- demo length


def test_demo_checkpoint_caps_a_chunk_near_its_estimated_duration(pipeline: BarkPipeline) -> None:
    assert pipeline.is_random_demo and pipeline.caps_demo_length
    params = GenerationParams.greedy()  # no max_duration_s
    chunks = list(pipeline.stream([SynthesisRequest("Hello there.", None, params)]))
    [c] = chunks
    assert c.estimate_s is not None and 0.3 < c.estimate_s < 2.0
    assert len(c.semantic) == semantic_tokens_for(c.estimate_s)
    # max_duration_s, where given, is the cap
    assert pipeline.semantic_cap(GenerationParams(max_duration_s=0.2), c.estimate_s) == 10
    real = BarkPipeline(
        semantic=pipeline.semantic,
        coarse=pipeline.coarse,
        fine=pipeline.fine,
        codec=pipeline.codec,
        tokenizer=pipeline.tokenizer,
        voices=pipeline.voices,
        model_name="real",
        device="cpu",
        dtype="float32",
    )
    assert not real.caps_demo_length
    assert real.semantic_cap(params, c.estimate_s) == 768  # real weights stop at EOS
