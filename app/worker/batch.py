"""Running one batch of jobs through `pipe.stream` and writing their events.

Rows may carry different voices, parameters, seeds and chunk counts; each row's events go to
its own output stream as soon as its chunk is decoded, and its terminal event (with the XACK)
as soon as its last chunk is.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bark_core.audio import pcm16_samples, to_pcm16
from bark_core.constants import SAMPLE_RATE
from bark_core.errors import BarkError
from bark_core.params import GenerationParams
from bark_core.planner import PlannedChunk
from bark_core.types import AudioChunk, SynthesisRequest
from bark_core.voices import language_of

from ..core.errors import Cancelled, DeadlineExceeded, GenerationFailed, ServiceError, from_core
from ..queue.connection import REDIS_DOWN
from ..queue.consumer import Consumer, Delivery
from ..queue.wire import TOKEN_DTYPE, CheckReport, Chunk, ChunkGeneration, Done, Event, Failed, Job, Started
from .active import ActiveJob, ActiveJobs
from .faults import Faults
from .resume import ResumePoint, plan_mismatch, resume_point
from .voice_cache import VoiceCache

log = logging.getLogger(__name__)


class Pipeline(Protocol):
    """What the runner needs of bark_core's BarkPipeline (tests may hand in the real one)."""

    def stream(
        self,
        requests: Sequence[SynthesisRequest],
        *,
        admit: Callable[[int], Sequence[SynthesisRequest]] | None = None,
        max_rows: int = 64,
        rows_per_request: int = 1,
    ) -> Iterator[AudioChunk]: ...

    def plan(self, request: SynthesisRequest) -> Sequence[PlannedChunk]: ...


# Asked while a batch runs for up to N more jobs to join it (already admitted: not cancelled,
# not expired).
MoreJobs = Callable[[int], list[Delivery]]


class DeviceFailure(Exception):
    """The accelerator's context is broken (a device-side assert poisons it for good): no job
    in hand is at fault, and none can run here any more. The worker exits without settling
    them, so healthy workers reclaim them."""


def device_failed(exc: BaseException) -> bool:
    """Whether `exc` is what a broken CUDA context raises (an out-of-memory error is not one:
    the context survives it)."""
    return type(exc).__name__ == "AcceleratorError" or any(
        sign in str(exc) for sign in ("CUDA error", "device-side assert")
    )


def generation_of(chunk: AudioChunk) -> ChunkGeneration:
    """The chunk's tokens as they are kept for resuming the job (issue 17)."""

    def raw(tokens: object) -> bytes:
        return np.ascontiguousarray(tokens, dtype=TOKEN_DTYPE).tobytes()

    return ChunkGeneration(chunk.chunk_index, raw(chunk.semantic), raw(chunk.coarse), raw(chunk.fine))


def checks_of(chunk: AudioChunk) -> dict[str, Any]:
    """The chunk event's fields on its checks and attempts (issue 16)."""
    reports = tuple(
        CheckReport(attempt, r.kind.value, r.passed, r.score, r.threshold)
        for attempt, results in enumerate(chunk.attempt_checks)
        for r in results
    )
    return {
        "attempts": chunk.attempts,
        "checks": reports,
        "sent_attempt": chunk.sent_attempt,
        "all_failed": chunk.all_failed,
        "trimmed_s": round(chunk.trimmed_s, 4),
    }


def failed(err: ServiceError) -> Failed:
    return Failed(err.type, err.message, err.param)


@dataclass
class Row:
    delivery: Delivery
    request: SynthesisRequest
    active: ActiveJob
    started: float
    samples: int = 0
    chunks: int = 0
    finished: bool = False
    resumed: ResumePoint = dataclasses.field(default_factory=ResumePoint)  # what it starts after
    retried_chunks: int = 0
    failed_chunks: int = 0
    trimmed_s: float = 0.0

    def restart(self) -> None:
        """Count from where this delivery started (the chunks before it are the client's)."""
        self.samples, self.chunks = self.resumed.samples, self.resumed.start_chunk
        self.retried_chunks = self.failed_chunks = 0
        self.trimmed_s = 0.0

    @property
    def job_id(self) -> str:
        return self.active.job_id


class BatchRunner:
    def __init__(
        self,
        pipe: Pipeline,
        consumer: Consumer,
        voices: VoiceCache,
        active: ActiveJobs,
        worker_id: str,
        faults: Faults | None = None,
        rows_per_request: int = 1,
    ) -> None:
        self.pipe = pipe
        self.rows_per_request = rows_per_request
        self.consumer = consumer
        self.voices = voices
        self.active = active
        self.worker_id = worker_id
        self.faults = faults or Faults(enabled=False)

    def run(self, deliveries: list[Delivery], more: MoreJobs | None = None, max_rows: int = 1) -> int:
        """Run the jobs as one batch; with `more`, jobs that arrive meanwhile join it (up to
        `max_rows` in flight). Returns how many jobs ran."""
        rows = [row for d in deliveries if (row := self._prepare(d, len(deliveries))) is not None]
        try:
            self._run_rows(rows, more, max_rows)
        finally:
            for row in rows:
                self.active.remove(row.job_id)
        return len(rows)

    def _prepare(self, delivery: Delivery, batch: int) -> Row | None:
        """The job as a pipeline request, its `started` event written; None if it cannot run."""
        job = delivery.job
        assert job is not None
        try:
            voice = self.voices.get(job.voice, job.voice_etag) if job.voice else None
            params = GenerationParams(**job.params)
        except BarkError as exc:
            self.consumer.finish(delivery, failed(from_core(exc)))
            return None
        except TypeError as exc:  # a field this version does not know
            self.consumer.finish(delivery, failed(GenerationFailed(f"bad job: {exc}")))
            return None
        # a redelivery (its worker died) starts after the chunks already written
        point = resume_point(self.consumer.written(job.id)) if delivery.deliveries > 1 else ResumePoint()
        mismatch = self._plan_mismatch(point, job)
        if mismatch is not None:
            self.consumer.finish(delivery, failed(GenerationFailed(f"cannot resume this job: {mismatch}")))
            return None
        active = self.active.add(delivery)
        request = SynthesisRequest(
            text=job.text,
            voice=voice,
            params=params,
            seed=job.seed,
            should_cancel=active.should_cancel,
            language=language_of(job.voice) if job.voice else None,
            start_chunk=point.start_chunk,
            history=point.history,
        )
        self.consumer.emit(job.id, Started(self.worker_id, delivery.deliveries, batch))
        log.info(
            "job started",
            extra={"job_id": job.id, "attempt": delivery.deliveries, "start_chunk": point.start_chunk},
        )
        self.faults.on_start(job)
        row = Row(delivery, request, active, time.perf_counter(), resumed=point)
        row.restart()
        if point.finished:  # it died after its last chunk, before its terminal event
            self._settle(row, self._done(row))
        return row

    def _plan_mismatch(self, point: ResumePoint, job: Job) -> str | None:
        if point.start_chunk == 0:
            return None
        language = language_of(job.voice) if job.voice else None
        try:
            planned = [c.text for c in self.pipe.plan(SynthesisRequest(job.text, language=language))]
        except BarkError:
            return None  # the pipeline raises it again, where its errors are settled
        return plan_mismatch(point, planned)

    def _run_rows(self, rows: list[Row], more: MoreJobs | None = None, max_rows: int = 1) -> None:
        """`rows` grows by the jobs that join; the pipeline numbers them in the same order."""
        if not rows:
            return
        try:
            self._stream(rows, more, max_rows)
        except REDIS_DOWN:
            # Not the rows' fault, and nothing can be written: leave them pending; they are
            # reclaimed (and resumed after their last chunk written) once Redis is back.
            raise
        except Exception as exc:
            if device_failed(exc):
                raise DeviceFailure(str(exc)) from exc
            self._on_failure(rows, exc)
            return
        for row in rows:
            if not row.finished:
                self._settle(row, failed(self._why_unfinished(row)))

    def _stream(self, rows: list[Row], more: MoreJobs | None, max_rows: int) -> None:
        def admit(free: int) -> list[SynthesisRequest]:
            assert more is not None
            joined = [row for d in more(free) if (row := self._prepare(d, len(rows) + 1)) is not None]
            rows.extend(joined)
            for row in joined:
                self.faults.on_generate(row.delivery)
            return [row.request for row in joined]

        for row in rows:
            self.faults.on_generate(row.delivery)
        joining = admit if more is not None else None
        requests = [row.request for row in rows]
        chunks = self.pipe.stream(
            requests, admit=joining, max_rows=max_rows, rows_per_request=self.rows_per_request
        )
        for chunk in chunks:
            if not rows[chunk.request_index].finished:  # settled early: nothing more
                self._on_chunk(rows[chunk.request_index], chunk)
            self._settle_dropped(rows)

    def _on_failure(self, rows: list[Row], exc: Exception) -> None:
        unfinished = [row for row in rows if not row.finished]
        if len(unfinished) > 1 and not isinstance(exc, BarkError):
            # One row may have broken the batch: give each its own run (from its delivery's
            # start again; the API skips chunks it already forwarded).
            log.exception("batch of %d failed; retrying rows one by one", len(unfinished))
            for row in unfinished:
                row.restart()
                self._run_rows([row])
            return
        if isinstance(exc, BarkError):
            err = from_core(exc)
        else:
            log.exception("generation failed")
            err = GenerationFailed(f"generation failed: {exc.__class__.__name__}")
        for row in unfinished:
            self._settle(row, failed(err))

    def _settle_dropped(self, rows: list[Row]) -> None:
        """Rows the pipeline has dropped (cancelled, past deadline) end now, not when the rest
        of their batch does: their queue entry and output stream are settled at once."""
        for row in rows:
            if not row.finished and row.active.dropped_at is not None:
                self._settle(row, failed(self._why_unfinished(row)))

    def _why_unfinished(self, row: Row) -> ServiceError:
        if row.active.cancelled.is_set():
            return Cancelled("cancelled by the client")
        if row.active.should_cancel():
            return DeadlineExceeded("deadline passed during generation")
        return GenerationFailed("the pipeline ended before the job's last chunk")

    def _on_chunk(self, row: Row, chunk: AudioChunk) -> None:
        pcm = to_pcm16(chunk.audio)
        row.samples += pcm16_samples(pcm)
        row.chunks += 1
        event = Chunk(
            chunk.chunk_index,
            pcm,
            chunk.text,
            chunk.n_chunks,
            {k: round(v, 6) for k, v in chunk.stage_seconds.items()},
            dict(chunk.stage_batch),
            estimate_s=None if chunk.estimate_s is None else round(chunk.estimate_s, 3),
            duration_s=round(chunk.duration_s, 4),
            pause_s=round(chunk.pause_s, 4),
            **checks_of(chunk),
        )
        row.retried_chunks += chunk.attempts > 1
        row.failed_chunks += chunk.all_failed
        row.trimmed_s += chunk.trimmed_s
        self.consumer.emit(row.job_id, event, generation_of(chunk))
        if chunk.is_last:
            self._settle(row, self._done(row))

    def _done(self, row: Row) -> Done:
        seconds = time.perf_counter() - row.started
        duration = row.samples / SAMPLE_RATE
        rtf = round(seconds / duration, 4) if duration > 0 else None
        return Done(
            round(duration, 4),
            row.samples,
            row.chunks,
            round(seconds, 4),
            rtf,
            self.worker_id,
            row.delivery.deliveries,
            row.retried_chunks,
            row.failed_chunks,
            round(row.trimmed_s, 4),
        )

    def _settle(self, row: Row, event: Event) -> None:
        if isinstance(event, Failed) and row.active.dropped_at is not None:
            event = dataclasses.replace(event, dropped_at=round(row.active.dropped_at, 4))
        self.consumer.finish(row.delivery, event)
        row.finished = True
        outcome = event.type if isinstance(event, Failed) else "done"
        log.info("job %s", outcome, extra={"job_id": row.job_id, "samples": row.samples})
