"""The worker's batch runner hands each job's voice, knobs and seed to the pipeline (fast: a
real Redis and the real pipeline in this process, no worker processes).

The same property as test_effects.py, one layer down, so that `make mutate` (fast tests only)
reaches app/worker/batch.py: each row's PCM in its output stream equals the pipeline run alone
with that row's settings, and its Done event counts what was written.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import pytest

from app.queue.connection import sync_client
from app.queue.consumer import Consumer
from app.queue.keys import Keys
from app.queue.wire import BUILTIN_ETAG, Chunk, Done, Failed, Job, Started, decode_event
from app.worker.active import ActiveJobs
from app.worker.batch import BatchRunner
from app.worker.voice_cache import VoiceCache
from bark_core.audio import to_pcm16
from bark_core.constants import SAMPLE_RATE
from bark_core.params import GenerationParams
from bark_core.quality import CheckKind, CheckResult, QualityThresholds
from bark_core.quality.checker import AudioVerdict, QualityChecker
from bark_core.quality.vad import Trim
from bark_core.types import SynthesisRequest

TEXT = "The runner passes it on."
CAP_S = 0.25  # as the service suite caps each chunk
SENTENCE = "Sentence {} is long enough that two of them fill one text chunk of about two hundred."
LONG = " ".join(SENTENCE.format(i) for i in range(4))
STAGES = {"semantic", "coarse", "fine", "codec"}
ROWS: list[dict[str, Any]] = [
    {
        "voice": "v2/en_speaker_1",
        "seed": 3,
        "params": {"text_temp": 0.0, "waveform_temp": 0.0, "fine_temp": 0.0},
    },
    {
        "voice": "v2/en_speaker_2",
        "seed": 3,
        "params": {"text_temp": 0.0, "waveform_temp": 0.0, "fine_temp": 0.0},
    },
    {"voice": None, "seed": 5, "params": {"top_k": 2, "min_eos_p": None}},
    {
        "voice": "v2/en_speaker_1",
        "seed": 6,
        "params": {"max_duration_s": 0.1, "continuity": "rolling"},
        "text": LONG,
    },
]


def _job(row: dict[str, Any]) -> Job:
    now = time.time()
    return Job(
        id=uuid.uuid4().hex,
        text=row.get("text", TEXT),
        voice=row["voice"],
        voice_etag=BUILTIN_ETAG if row["voice"] else None,
        params={"max_duration_s": CAP_S, **row["params"]},
        seed=row["seed"],
        submitted_at=now,
        deadline=now + 120,
    )


@pytest.fixture
def runner_parts(redis_url, pipeline):  # type: ignore[no-untyped-def]
    client = sync_client(redis_url, 5.0)
    keys = Keys(f"batch{uuid.uuid4().hex[:6]}")
    consumer = Consumer(client, keys, "w-test", claim_idle_ms=60_000, job_ttl_s=60, stream_ttl_s=120)
    consumer.ensure_group()
    voices = VoiceCache(client, keys, pipeline.voices, pipeline.model_name)
    runner = BatchRunner(pipeline, consumer, voices, ActiveJobs(), "w-test")
    return client, keys, consumer, runner


def _events(client, keys: Keys, job_id: str) -> list[Any]:  # type: ignore[no-untyped-def]
    return [decode_event(fields) for _, fields in client.xrange(keys.out(job_id))]


def _reference(pipeline, row: dict[str, Any]) -> bytes:  # type: ignore[no-untyped-def]
    voice = pipeline.voices.get(row["voice"]) if row["voice"] else None
    params = GenerationParams(**{"max_duration_s": CAP_S, **row["params"]})
    return to_pcm16(pipeline.synthesize(row.get("text", TEXT), voice, params, row["seed"]))


def test_each_row_gets_its_own_voice_knobs_and_seed(runner_parts, pipeline):
    client, keys, consumer, runner = runner_parts
    jobs = [_job(row) for row in ROWS]
    for job in jobs:
        client.xadd(keys.jobs, job.to_fields())  # type: ignore[arg-type]
    deliveries = consumer.read(len(jobs), block_ms=1000)
    t0 = time.perf_counter()
    assert runner.run(deliveries, max_rows=len(jobs)) == len(jobs)
    elapsed = time.perf_counter() - t0
    references = [_reference(pipeline, row) for row in ROWS]
    assert len(set(references)) == len(references)  # each row's settings matter
    for job, reference in zip(jobs, references, strict=True):
        events = _events(client, keys, job.id)
        assert isinstance(events[0], Started) and events[0].batch == len(jobs)
        chunks = [e for e in events if isinstance(e, Chunk)]
        done = events[-1]
        assert b"".join(c.pcm for c in chunks) == reference
        assert [c.seq for c in chunks] == list(range(chunks[0].n_chunks))
        for c in chunks:  # each chunk's share of the stage runs: within the whole run's time
            assert set(c.stage_seconds) == STAGES and 0 <= sum(c.stage_seconds.values()) <= elapsed
            assert set(c.stage_batch) == STAGES - {"codec"} and min(c.stage_batch.values()) >= 1
            assert c.text and c.text in job.text
        assert isinstance(done, Done), done
        assert (done.samples, done.chunks) == (len(reference) // 2, len(chunks))
        assert done.duration_s == pytest.approx(len(reference) / 2 / SAMPLE_RATE, abs=1e-4)
    assert client.xlen(keys.jobs) == 0  # every entry settled


def test_a_bad_job_fails_alone_with_its_reason(runner_parts):
    client, keys, consumer, runner = runner_parts
    bad = _job({"voice": "v2/xx_speaker_99", "seed": 1, "params": {}})
    unknown = _job({"voice": None, "seed": 1, "params": {"no_such_knob": 1}})
    for job in (bad, unknown):
        client.xadd(keys.jobs, job.to_fields())  # type: ignore[arg-type]
    assert runner.run(consumer.read(2, block_ms=1000)) == 0
    missing, odd = _events(client, keys, bad.id)[-1], _events(client, keys, unknown.id)[-1]
    assert isinstance(missing, Failed) and missing.type == "unknown_voice" and missing.param == "voice"
    assert isinstance(odd, Failed) and odd.type == "generation_failed" and "no_such_knob" in odd.message


def test_a_job_that_joins_a_running_batch_gets_its_own_settings(runner_parts, pipeline):
    """`more` hands in a job once the first has started: it joins at a stage boundary, says it
    shares a batch of two, and its audio is its own solo run's."""
    client, keys, consumer, runner = runner_parts
    first, joiner = _job(ROWS[0]), _job(ROWS[2])
    client.xadd(keys.jobs, first.to_fields())  # type: ignore[arg-type]
    deliveries = consumer.read(1, block_ms=1000)
    client.xadd(keys.jobs, joiner.to_fields())  # type: ignore[arg-type]
    asked: list[int] = []

    def more(free: int) -> list[Any]:
        asked.append(free)
        return consumer.read(free, block_ms=100) if len(asked) == 1 else []

    assert runner.run(deliveries, more=more, max_rows=2) == 2  # the jobs that ran, the joiner too
    assert asked[0] == 1  # one free row of two
    joined = _events(client, keys, joiner.id)
    assert isinstance(joined[0], Started) and joined[0].batch == 2
    assert b"".join(e.pcm for e in joined if isinstance(e, Chunk)) == _reference(pipeline, ROWS[2])
    assert isinstance(joined[-1], Done)
    assert b"".join(e.pcm for e in _events(client, keys, first.id) if isinstance(e, Chunk)) == _reference(
        pipeline, ROWS[0]
    )


def test_a_cancelled_row_ends_at_once_and_alone(runner_parts, pipeline):
    """The cancel flag (as the worker's poller sets it) drops the row at its next decode step:
    its stream ends `cancelled` with fewer chunks than it had, at once (before its batch-mate,
    which has more chunks to go, is done), and the batch-mate runs to its end."""
    client, keys, consumer, runner = runner_parts
    doomed, mate = _job({**ROWS[3], "params": {"max_duration_s": 0.1}}), _job({**ROWS[0], "text": LONG})
    for job in (doomed, mate):
        client.xadd(keys.jobs, job.to_fields())  # type: ignore[arg-type]

    def more(free: int) -> list[Any]:  # asked before every stage run: cancel once audio is out
        if any(isinstance(e, Chunk) for e in _events(client, keys, doomed.id)):
            next(a for a in runner.active.snapshot() if a.job_id == doomed.id).cancelled.set()
        return []

    runner.run(consumer.read(2, block_ms=1000), more=more, max_rows=3)  # a free row: `more` is asked
    events = _events(client, keys, doomed.id)
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert isinstance(events[-1], Failed) and events[-1].type == "cancelled", events[-1]
    assert events[-1].dropped_at is not None
    assert 0 < len(chunks) < chunks[0].n_chunks
    mate_events = _events(client, keys, mate.id)
    assert isinstance(mate_events[-1], Done)
    # each of the mate's chunks once: the batch was not failed and rerun row by row
    mate_seqs = [e.seq for e in mate_events if isinstance(e, Chunk)]
    assert mate_seqs == list(range(mate_events[-1].chunks)) and len(mate_seqs) > 1
    assert client.xlen(keys.jobs) == 0

    def written_ms(job_id: str) -> int:  # when the job's terminal event went into Redis
        last = client.xrevrange(keys.out(job_id), count=1)[0][0]  # type: ignore[index]
        return int(last.split(b"-")[0])

    assert written_ms(doomed.id) < written_ms(mate.id)


class _RetryAndTrim(QualityChecker):
    """Each chunk's first attempt fails where its text says "again", every attempt fails where
    it says "never", the rest pass; every attempt is trimmed 10 ms at each end."""

    def __init__(self) -> None:
        super().__init__(QualityThresholds(skip=frozenset(CheckKind), trim_margin_s=None), None)
        self.seen: set[str] = set()

    def audio(self, audio: np.ndarray, text: str, sample_rate: int = SAMPLE_RATE) -> AudioVerdict:
        passed = "never" not in text and ("again" not in text or text in self.seen)
        self.seen.add(text)
        result = CheckResult(CheckKind.NO_SPEECH, passed, float(passed), 0.5, "min")
        return AudioVerdict([result], Trim(audio[240:-240], 0.01, 0.01))


def test_the_events_carry_each_chunks_figures_and_the_done_counts_its_retries(runner_parts, pipeline):
    """Chunk events carry the pipeline's estimate (the planner's, already to 3 places),
    duration and pause (rounded to 4) and stage seconds (to 6); Done counts the chunks
    retried, those whose every attempt failed, and the seconds trimmed, over all chunks."""
    client, keys, consumer, runner = runner_parts
    text = " ".join(
        f"Sentence {n} says {word}, and it is long enough to take a text chunk all of its own here."
        for n, word in enumerate(("again", "never", "once"))
    )
    params = {"max_duration_s": 0.3, "continuity": "fixed", "chunk_pause_s": 0.123456, "seed": 2}
    job = _job(
        {"voice": None, "seed": 2, "params": {k: v for k, v in params.items() if k != "seed"}, "text": text}
    )
    client.xadd(keys.jobs, job.to_fields())  # type: ignore[arg-type]
    try:
        pipeline.set_quality(_RetryAndTrim(), attempts=2, random_weights=False)
        runner.run(consumer.read(1, block_ms=1000))
        pipeline.set_quality(_RetryAndTrim(), attempts=2, random_weights=False)
        request = SynthesisRequest(text, None, GenerationParams(**job.params), job.seed)
        expected = list(pipeline.stream([request]))
    finally:
        pipeline.set_quality(None)
    events = _events(client, keys, job.id)
    chunks, done = [e for e in events if isinstance(e, Chunk)], events[-1]
    assert [(c.attempts, c.all_failed) for c in expected] == [(2, False), (2, True), (1, False)]
    assert len(chunks) == len(expected) == 3
    for event, chunk in zip(chunks, expected, strict=True):
        assert event.estimate_s == round(chunk.estimate_s, 3)  # type: ignore[arg-type]
        assert event.duration_s == round(chunk.duration_s, 4) != chunk.duration_s
        assert event.pause_s == round(chunk.pause_s, 4)
        sent = (event.attempts, event.all_failed, event.sent_attempt, event.trimmed_s, len(event.checks))
        assert sent == (chunk.attempts, chunk.all_failed, chunk.sent_attempt, 0.02, chunk.attempts)
        values = event.stage_seconds.values()
        assert all(round(v, 6) == v for v in values) and any(v != int(v) for v in values)
    assert [c.pause_s for c in chunks] == [0.0, 0.1235, 0.1235]
    assert isinstance(done, Done), done
    assert (done.retried_chunks, done.failed_chunks, done.trimmed_s) == (2, 1, 0.06)


def test_a_jobs_independent_chunks_share_a_stage_run_up_to_rows_per_request(runner_parts, pipeline):
    """`rows_per_request` reaches the pipeline: with 2, a job's `fixed` chunks run their stages
    two at a time as rows of one batch (their events' stage_batch says 2; with 1 every chunk
    runs alone), and the audio is the one-row-at-a-time run's."""
    client, keys, consumer, _ = runner_parts
    voices = VoiceCache(client, keys, pipeline.voices, pipeline.model_name)
    runner = BatchRunner(pipeline, consumer, voices, ActiveJobs(), "w-rows", rows_per_request=2)
    row = {"voice": None, "seed": 4, "params": {"continuity": "fixed", "max_duration_s": 0.2}, "text": LONG}
    job = _job(row)
    client.xadd(keys.jobs, job.to_fields())  # type: ignore[arg-type]
    runner.run(consumer.read(1, block_ms=1000), max_rows=4)
    chunks = [e for e in _events(client, keys, job.id) if isinstance(e, Chunk)]
    assert len(chunks) == 4 and max(c.stage_batch["semantic"] for c in chunks) == 2
    assert b"".join(c.pcm for c in chunks) == _reference(pipeline, row)
