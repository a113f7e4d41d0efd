"""The chunk checks inside the pipeline on the tiny checkpoint: a failing chunk is generated
again with the seed of (seed, chunk, attempt), the attempts are reported, a fixed seed gives
the same audio twice, and a request that needs no retry is unchanged by the checks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from bark_core import stages
from bark_core.audio import to_pcm16
from bark_core.errors import InvalidParameterError
from bark_core.params import GenerationParams
from bark_core.pipeline import BarkPipeline
from bark_core.quality import CheckKind, CheckResult, QualityThresholds, attempt_seed
from bark_core.quality.checker import AudioVerdict, QualityChecker
from bark_core.quality.vad import Trim
from bark_core.seams import join_chunk
from bark_core.types import AudioChunk, SynthesisRequest

PARAMS = GenerationParams(max_duration_s=2.0)  # 100 semantic tokens: the random model never stops
TEXT = "Hello there."  # estimated at 1.13 s: 56 tokens
NO_AUDIO_CHECKS = frozenset({CheckKind.NO_SPEECH, CheckKind.LATE_END, CheckKind.ASR})
# run_on past 1% over the estimate: every attempt at TEXT runs to the cap and fails
STRICT = QualityThresholds(max_length_ratio=1.01, length_slack_s=0, skip=NO_AUDIO_CHECKS, trim_margin_s=None)


@pytest.fixture
def pipe(pipeline: BarkPipeline) -> Iterator[BarkPipeline]:
    yield pipeline
    pipeline.set_quality(None)


def _run(pipe: BarkPipeline, text: str, seed: int, params: GenerationParams = PARAMS) -> list[AudioChunk]:
    return list(pipe.stream([SynthesisRequest(text, None, params, seed)]))


def _pcm(chunks: Sequence[AudioChunk]) -> bytes:
    return b"".join(to_pcm16(c.audio) for c in chunks)


class FailFirstAudio(QualityChecker):
    """Attempt 0 at every chunk fails an audio check (its first audio of that text), the rest
    pass: a retry after the whole chunk was generated."""

    def __init__(self) -> None:
        super().__init__(QualityThresholds(skip=frozenset(CheckKind), trim_margin_s=None), None)
        self.seen: set[str] = set()

    def audio(self, audio: np.ndarray, text: str, sample_rate: int = 24_000) -> AudioVerdict:
        first = text not in self.seen
        self.seen.add(text)
        result = CheckResult(CheckKind.NO_SPEECH, not first, 0.0 if first else 1.0, 0.3, "min")
        return AudioVerdict([result], Trim(audio, 0.0, 0.0))


def test_semantic_failure_retries_before_coarse_and_sends_the_best_marked(
    pipe: BarkPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = {"semantic": 0, "coarse": 0}
    for stage in rows:
        real = getattr(stages, f"generate_{stage}")

        def counted(*args, _stage=stage, _real=real, **kwargs):  # type: ignore[no-untyped-def]
            rows[_stage] += len(args[1])
            return _real(*args, **kwargs)

        monkeypatch.setattr(stages, f"generate_{stage}", counted)
    pipe.set_quality(QualityChecker(STRICT, None), attempts=3, random_weights=False)
    [chunk] = _run(pipe, TEXT, seed=7)
    assert rows == {"semantic": 3, "coarse": 1}  # two semantic retries, one coarse run
    assert chunk.attempts == 3 and chunk.all_failed and chunk.sent_attempt == 2
    assert [[r.kind for r in a if not r.passed] for a in chunk.attempt_checks] == [[CheckKind.RUN_ON]] * 3
    assert chunk.checks == chunk.attempt_checks[2]
    # attempt 2 drew from attempt_seed(7, 0, 2): as a plain request with that seed does
    pipe.set_quality(None)
    [plain] = _run(pipe, TEXT, seed=attempt_seed(7, 0, 2))
    np.testing.assert_array_equal(chunk.semantic, plain.semantic)
    assert to_pcm16(chunk.audio) == to_pcm16(plain.audio)


def test_audio_failure_retries_the_whole_chunk_with_a_derived_seed(pipe: BarkPipeline) -> None:
    text = " ".join(f"Sentence {n} is long enough that it takes a chunk of its own, surely." for n in (1, 2))
    params = GenerationParams(max_duration_s=0.3, continuity="fixed")
    pipe.set_quality(FailFirstAudio(), attempts=2, random_weights=False)
    checked = _run(pipe, text, seed=3, params=params)
    assert len(checked) >= 2
    for c in checked:
        assert (c.attempts, c.sent_attempt, c.all_failed) == (2, 1, False)
        assert [r.passed for r in c.attempt_checks[0]] == [False]
    pipe.set_quality(None)
    [plain] = _run(pipe, checked[0].text, seed=attempt_seed(3, 0, 1), params=params)
    np.testing.assert_array_equal(checked[0].fine, plain.fine)
    assert to_pcm16(checked[0].audio) == to_pcm16(plain.audio)
    assert to_pcm16(checked[0].audio) != to_pcm16(_run(pipe, checked[0].text, seed=3, params=params)[0].audio)


def test_a_fixed_seed_gives_the_same_audio_however_often_it_retried(pipe: BarkPipeline) -> None:
    pipe.set_quality(QualityChecker(STRICT, None), attempts=2, random_weights=False)
    text, params = "Hello there. " * 4, GenerationParams(max_duration_s=4.0)  # chunks of 3.39 and 1.13 s
    first, second = _run(pipe, text, 11, params), _run(pipe, text, 11, params)
    assert [c.attempts for c in first] == [2, 2]
    assert _pcm(first) == _pcm(second)


def test_a_request_that_needs_no_retry_is_unchanged_by_the_checks(pipe: BarkPipeline) -> None:
    text = "First words here. " * 12
    params = GenerationParams(max_duration_s=0.4)
    plain = _run(pipe, text, seed=5, params=params)
    pipe.set_quality(QualityChecker.load(QualityThresholds()), attempts=3)  # the random demo: loop only
    checked = _run(pipe, text, seed=5, params=params)
    assert len(checked) == len(plain) >= 2
    assert _pcm(checked) == _pcm(plain)
    for c in checked:
        assert c.attempts == 1 and not c.all_failed and c.trimmed_s == 0.0
        assert [r.kind for r in c.checks] == [CheckKind.LOOP] and c.checks[0].passed
    assert all(c.attempts == 1 and c.attempt_checks == [] for c in plain)


def test_the_random_demo_turns_off_the_blind_checks(pipe: BarkPipeline) -> None:
    pipe.set_quality(QualityChecker(QualityThresholds(), None), attempts=3)
    assert pipe.quality is not None
    assert pipe.quality.active == [CheckKind.LOOP] and pipe.quality.thresholds.trim_margin_s is None
    with pytest.raises(InvalidParameterError):
        pipe.set_quality(None, attempts=0)


class TrimEnds(QualityChecker):
    """Passes every attempt and trims 10 ms from each end (as the VAD trim would)."""

    def __init__(self) -> None:
        super().__init__(QualityThresholds(skip=frozenset(CheckKind), trim_margin_s=None), None)

    def audio(self, audio: np.ndarray, text: str, sample_rate: int = 24_000) -> AudioVerdict:
        return AudioVerdict([], Trim(audio[240:-240], 0.01, 0.01))


def test_the_trim_comes_before_the_fades_and_the_pause(pipe: BarkPipeline) -> None:
    text = " ".join(f"Sentence {n} is long enough that it takes a chunk of its own, surely." for n in (1, 2))
    params = GenerationParams(max_duration_s=0.3, continuity="fixed")
    plain = _run(pipe, text, seed=4, params=params)
    pipe.set_quality(TrimEnds(), attempts=2, random_weights=False)
    trimmed = _run(pipe, text, seed=4, params=params)
    assert len(trimmed) == len(plain) >= 2
    for p, t in zip(plain, trimmed, strict=True):
        expected = join_chunk(pipe.decode(p.fine)[240:-240], p.chunk_index, p.pause_s)
        assert to_pcm16(t.audio) == to_pcm16(expected) and t.trimmed_s == pytest.approx(0.02)
        assert t.attempts == 1 and t.pause_s == p.pause_s


def test_a_greedy_chunk_is_not_retried_since_any_seed_draws_the_same(pipe: BarkPipeline) -> None:
    pipe.set_quality(QualityChecker(STRICT, None), attempts=3, random_weights=False)
    [chunk] = _run(pipe, TEXT, seed=7, params=GenerationParams.greedy(max_duration_s=2.0))
    assert (chunk.attempts, chunk.all_failed, chunk.sent_attempt) == (1, True, 0)
    assert [r.kind for r in chunk.checks if not r.passed] == [CheckKind.RUN_ON]
