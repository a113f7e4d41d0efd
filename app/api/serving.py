"""Submitting a synthesis and consuming its events, shared by HTTP, OpenAI and websocket routes."""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import HTTPConnection

from bark_core.audio import pcm16_samples
from bark_core.constants import SAMPLE_RATE
from bark_core.errors import InvalidParameterError
from bark_core.params import GenerationParams

from ..core.errors import Cancelled, InvalidRequest, ServiceError, from_type
from ..queue.connection import REDIS_DOWN
from ..queue.producer import ClientGone
from ..queue.wire import Chunk, Done, Event, Failed, Job, Started
from .budget import check_audio_budget
from .protocol import MAX_SEED
from .state import AppState

log = logging.getLogger(__name__)


class JobRun:
    """One submitted job as seen by one client: its events, its metrics, its cancellation.

    `events()` yields Started/Chunk/Done and raises the job's error as a ServiceError. Close
    the run when done with it: a run closed before its terminal event cancels the job.
    """

    def __init__(self, state: AppState, job: Job, position: int) -> None:
        self.state = state
        self.job = job
        self.position = position
        self.finished = False
        self.samples = 0
        self.chunks = 0
        self.done: Done | None = None
        self._counted = False
        self._iter: AsyncIterator[Event] | None = None
        self._open = True  # counted in state.drain until close()
        state.drain.enter()

    @property
    def seed(self) -> int:
        return self.job.seed

    def events(self, client_gone: ClientGone | None = None) -> AsyncIterator[Event]:
        """The job's events (one iterator per run: later calls continue the same one)."""
        if self._iter is None:
            self._iter = self._events(client_gone)
        return self._iter

    async def _events(self, client_gone: ClientGone | None) -> AsyncIterator[Event]:
        try:
            async for event in self.state.queue.follow(self.job.id, self.job.deadline, client_gone):
                self._observe(event)
                if isinstance(event, Failed):
                    raise from_type(event.type, event.message, event.param)
                yield event
        except ServiceError as exc:
            # The job's own error, or ours while following it (deadline, client gone, Redis
            # lost): counted once here. Only the former ended the job; close() cancels it
            # otherwise.
            self._counted = True
            self.state.metrics.jobs.labels(exc.type).inc()
            raise

    def _observe(self, event: Event) -> None:
        metrics = self.state.metrics
        since_submit = time.time() - self.job.submitted_at
        if isinstance(event, Started):
            metrics.queue_wait.observe(since_submit)
        elif isinstance(event, Chunk):
            if self.chunks == 0:
                metrics.time_to_first_audio.observe(since_submit)
            self.chunks += 1
            self.samples += pcm16_samples(event.pcm)
            metrics.observe_chunk(event)
        elif isinstance(event, Done):
            self.finished = True
            self.done = event
            metrics.observe_done(event, self.duration_s())
        else:
            self.finished = True

    async def collect(self, client_gone: ClientGone | None = None) -> bytes:
        """All PCM of the job (s16le), once it is done."""
        parts = [event.pcm async for event in self.events(client_gone) if isinstance(event, Chunk)]
        return b"".join(parts)

    async def close(self) -> None:
        """Cancel the job unless it ended; safe to call from a cancelled task."""
        with anyio.CancelScope(shield=True):
            try:
                if self._iter is not None:
                    await self._iter.aclose()  # type: ignore[attr-defined]
                if not self.finished:
                    self.finished = True
                    if not self._counted:
                        self.state.metrics.jobs.labels(Cancelled.type).inc()
                    await self.state.queue.cancel(self.job.id, until=self.job.deadline)
            finally:
                if self._open:
                    self._open = False
                    self.state.drain.leave()

    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE


def build_params(fields: dict[str, Any], server_cap: float | None, pause_s: float) -> dict[str, Any]:
    """Validate through bark_core (one source of truth), with the server's pause between chunks
    and its duration cap."""
    fields = {**fields, "chunk_pause_s": pause_s}
    if server_cap is not None:
        asked = fields.get("max_duration_s")
        fields = {**fields, "max_duration_s": min(asked, server_cap) if asked else server_cap}
    try:
        GenerationParams(**fields)
    except InvalidParameterError as exc:
        raise InvalidRequest(str(exc), param=exc.param) from exc
    return fields


async def submit(
    state: AppState,
    *,
    text: str,
    voice: str | None,
    params: dict[str, Any],
    seed: int | None,
    request_id: str,
    speed: float = 1.0,
) -> JobRun:
    """Validate, pin voice version and seed, and queue. Raises before anything is sent."""
    if state.drain.draining:
        raise state.queue.unavailable("this server is shutting down; retry")
    params = build_params(params, state.settings.max_duration_s, state.settings.chunk_pause_s)
    check_audio_budget(text, params.get("max_duration_s"), speed, state.settings.max_request_audio_s)
    voice = voice or state.settings.default_voice
    try:
        etag = await state.voices.etag(voice) if voice else None
        now = time.time()
        job = Job(
            id=uuid.uuid4().hex,
            text=text,
            voice=voice,
            voice_etag=etag,
            params=params,
            seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
            submitted_at=now,
            deadline=now + state.settings.request_timeout_s,
            request_id=request_id,
        )
        position = await state.queue.submit(job)
    except REDIS_DOWN as exc:
        raise state.queue.unavailable("queue unavailable") from exc
    except ServiceError as exc:
        state.metrics.jobs.labels(f"rejected_{exc.type}").inc()
        raise
    extra = {"job_id": job.id, "position": position, "seed": job.seed, "voice": voice, "chars": len(text)}
    log.info("job queued", extra=extra)
    return JobRun(state, job, position)


def request_id_of(conn: HTTPConnection) -> str:
    return str(conn.scope.get("state", {}).get("request_id", ""))
