"""Resume, not redo (issue 17 part 3), in one process on the real queue and the real tiny
pipeline: a job whose first delivery died after writing some chunks is continued by its next
delivery from the first chunk not written, with the kept generations as history."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from app.queue.connection import sync_client
from app.queue.consumer import Consumer, Delivery
from app.queue.keys import Keys
from app.queue.wire import Chunk, ChunkGeneration, Done, Event, Failed, Job, Started, decode_event
from app.worker.active import ActiveJobs
from app.worker.batch import BatchRunner
from app.worker.resume import ResumePoint, plan_mismatch, resume_point
from app.worker.voice_cache import VoiceCache
from bark_core.pipeline import BarkPipeline
from bark_core.planner import PlannedChunk
from bark_core.types import AudioChunk, SynthesisRequest
from tests.bark_core.test_longform import paragraph


class _Killed(BaseException):
    """The worker dying (SIGKILL): nothing after it runs, nothing is settled."""


class _Pipe:
    """The real pipeline, counting the chunks it generates; with `die_after`, the worker
    dies once that many chunks have come out."""

    def __init__(self, pipe: BarkPipeline, die_after: int | None = None) -> None:
        self.pipe = pipe
        self.die_after = die_after
        self.generated: list[int] = []

    def stream(self, requests: Sequence[SynthesisRequest], **kw: Any) -> Iterator[AudioChunk]:
        for chunk in self.pipe.stream(requests, **kw):
            if self.die_after is not None and len(self.generated) == self.die_after:
                raise _Killed
            self.generated.append(chunk.chunk_index)
            yield chunk

    def plan(self, request: SynthesisRequest) -> list[PlannedChunk]:
        return self.pipe.plan(request)


def _setup(redis_url: str, pipeline: BarkPipeline) -> tuple[Consumer, VoiceCache]:
    keys = Keys(f"resume-{uuid.uuid4().hex[:8]}")
    consumer = Consumer(
        sync_client(redis_url, 5.0), keys, "w", claim_idle_ms=60_000, job_ttl_s=60, stream_ttl_s=120
    )
    consumer.ensure_group()
    return consumer, VoiceCache(consumer.redis, keys, pipeline.voices, pipeline.model_name)


def _job(continuity: str) -> Job:
    params = {"max_duration_s": 0.3, "continuity": continuity}
    now = time.time()
    return Job(uuid.uuid4().hex, paragraph(3), None, None, params, 9, now, now + 600)


def _deliver(consumer: Consumer, job: Job, deliveries: int, pipe: _Pipe, voices: VoiceCache) -> None:
    entry = consumer.redis.xadd(consumer.keys.jobs, job.to_fields())  # type: ignore[arg-type]
    runner = BatchRunner(pipe, consumer, voices, ActiveJobs(), f"worker-{deliveries}", rows_per_request=1)
    with contextlib.suppress(_Killed):
        runner.run([Delivery(entry, job, deliveries)])


def _events(consumer: Consumer, job: Job) -> list[Event]:
    return [decode_event(f) for _, f in consumer.redis.xrange(consumer.keys.out(job.id))]  # type: ignore[union-attr]


def _pcm(events: list[Event]) -> list[bytes]:
    return [e.pcm for e in events if isinstance(e, Chunk)]


@pytest.mark.parametrize("continuity", ["anchor", "rolling"])
def test_a_redelivered_job_generates_only_the_chunks_not_yet_written(
    redis_url: str, pipeline: BarkPipeline, continuity: str
) -> None:
    consumer, voices = _setup(redis_url, pipeline)
    whole = _job(continuity)
    _deliver(consumer, whole, 1, _Pipe(pipeline), voices)
    reference = _pcm(_events(consumer, whole))
    assert len(reference) == 4

    job = _job(continuity)
    job = Job(job.id, whole.text, None, None, whole.params, whole.seed, job.submitted_at, job.deadline)
    first, second = _Pipe(pipeline, die_after=2), _Pipe(pipeline)
    _deliver(consumer, job, 1, first, voices)
    _deliver(consumer, job, 2, second, voices)
    assert (first.generated, second.generated) == ([0, 1], [2, 3])
    events = _events(consumer, job)
    assert [type(e).__name__ for e in events] == [
        "Started",
        "Chunk",
        "Chunk",
        "Started",
        "Chunk",
        "Chunk",
        "Done",
    ]
    assert [e.seq for e in events if isinstance(e, Chunk)] == [0, 1, 2, 3]
    assert _pcm(events) == reference  # the joined audio equals the uninterrupted run's
    done = events[-1]
    assert isinstance(done, Done) and done.chunks == 4 and done.samples == sum(len(p) // 2 for p in reference)
    assert isinstance(events[3], Started) and events[3].attempt == 2


def test_a_worker_that_plans_the_text_differently_fails_the_job_instead_of_resuming_it(
    redis_url: str, pipeline: BarkPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rolling update changed the planner's settings between two deliveries: continuing at
    chunk 2 of a different split would skip or repeat words, so the job fails, saying why,
    and nothing more is generated."""
    consumer, voices = _setup(redis_url, pipeline)
    job = _job("rolling")
    _deliver(consumer, job, 1, _Pipe(pipeline, die_after=2), voices)
    monkeypatch.setattr(pipeline, "chunk_target_s", pipeline.chunk_target_s / 2)
    again = _Pipe(pipeline)
    _deliver(consumer, job, 2, again, voices)
    events = _events(consumer, job)
    assert again.generated == []
    assert [type(e).__name__ for e in events] == ["Started", "Chunk", "Chunk", "Failed"]
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.type == "generation_failed"
    assert failed.message.startswith("cannot resume this job: this worker plans")


def test_a_job_that_died_after_its_last_chunk_is_settled_without_generating(
    redis_url: str, pipeline: BarkPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, voices = _setup(redis_url, pipeline)
    job = _job("rolling")

    def die(*_: Any) -> None:
        raise _Killed

    with monkeypatch.context() as m:
        m.setattr(consumer, "finish", die)  # dies between its last chunk and its terminal event
        _deliver(consumer, job, 1, _Pipe(pipeline), voices)
    again = _Pipe(pipeline)
    _deliver(consumer, job, 2, again, voices)
    events = _events(consumer, job)
    assert again.generated == []
    assert [e.seq for e in events if isinstance(e, Chunk)] == [0, 1, 2, 3]
    assert isinstance(events[-1], Done) and events[-1].chunks == 4


def test_written_reads_a_long_stream_back_and_the_start_needs_every_generation(
    redis_url: str, pipeline: BarkPipeline
) -> None:
    consumer, _ = _setup(redis_url, pipeline)
    job_id = uuid.uuid4().hex
    gen = ChunkGeneration(0, b"\x01\x00" * 4, b"\x02\x00" * 6, b"\x03\x00" * 24)
    consumer.emit(job_id, Started("w", 1, 1))
    for seq in range(40):  # more than a page
        keep = None if seq == 37 else dataclasses.replace(gen, seq=seq)
        consumer.emit(job_id, Chunk(seq, b"\x00\x00" * (seq + 1), n_chunks=50), keep)
    written = consumer.written(job_id)
    assert written.next_seq == 40 and written.n_chunks == 50
    assert written.samples == {seq: seq + 1 for seq in range(40)}
    point = resume_point(written)
    # chunk 37's generation is missing: it and the chunks after it are generated again
    assert point.start_chunk == 37 and sorted(point.history) == list(range(37))
    assert point.samples == sum(range(1, 38)) and not point.finished
    voice = point.history[5]
    assert voice.semantic.tolist() == [1] * 4 and voice.coarse.shape == (2, 3) and voice.fine.shape == (8, 3)


def test_a_plan_that_splits_the_same_count_elsewhere_is_told_apart() -> None:
    point = ResumePoint(start_chunk=2, n_chunks=3, texts=("One two.", "Three."))
    assert plan_mismatch(point, ["One two.", "Three.", "Four."]) is None
    assert plan_mismatch(point, ["One.", "Two three.", "Four."]) == (
        "chunk 0 was planned as 'One two.', this worker plans it differently"
    )
    assert plan_mismatch(ResumePoint(), ["anything"]) is None  # a first delivery: nothing to check
