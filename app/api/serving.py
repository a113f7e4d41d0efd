"""Submitting a synthesis and consuming its events, shared by HTTP, OpenAI and websocket routes."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import HTTPConnection

from bark_core.audio import pcm16_samples
from bark_core.constants import SAMPLE_RATE
from bark_core.errors import InvalidParameterError
from bark_core.params import GenerationParams

from ..core.errors import Cancelled, InvalidRequest, NotFound, ServiceError, from_type
from ..queue.connection import REDIS_DOWN
from ..queue.keys import idempotency, owner_active
from ..queue.producer import Admission, ClientGone
from ..queue.wire import Chunk, Done, Event, Failed, Job, JobRecord, Started
from .budget import check_audio_budget
from .fair_share import count_submission, label_of, limit_for
from .protocol import MAX_SEED, GenerationFields
from .state import AppState

log = logging.getLogger(__name__)
_JOB_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex


class JobRun:
    """One submitted job as seen by one client: its events, its metrics, its cancellation.

    `events()` yields Started/Chunk/Done and raises the job's error as a ServiceError. Close
    the run when done with it: a run closed before its terminal event cancels the job, or,
    with a resume grace period, leaves it that long for a client to resume (see `_leave`).
    """

    def __init__(
        self, state: AppState, job: Job, position: int, *, attended: bool = True, from_seq: int = 0
    ) -> None:
        self.state = state
        self.job = job
        self.position = position
        # Attended: a client reading it keeps it alive; one that leaves leaves it the grace
        # period for a resume (none: cancelled at once). Unattended (POST /jobs): runs anyway.
        self.attended = attended
        self.from_seq = from_seq
        self.cancel_requested = False  # the client asked to cancel (not merely left)
        self.duplicate = False  # an Idempotency-Key named this earlier job: nothing was queued
        # A resumed reader may come after the job's deadline, to read a finished job's output.
        self.follow_deadline = job.deadline
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
            lease_ms = self.lease_ms if self.attended else 0
            events = self.state.queue.follow(
                self.job.id, self.follow_deadline, client_gone, from_seq=self.from_seq, lease_ms=lease_ms
            )
            async for event in events:
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

    @property
    def lease_ms(self) -> int:
        return int(self.state.settings.resume_grace_s * 1000)

    async def close(self) -> None:
        """Cancel the job unless it ended, or leave it its grace period (see `attended`);
        safe to call from a cancelled task."""
        with anyio.CancelScope(shield=True):
            try:
                if self._iter is not None:
                    await self._iter.aclose()  # type: ignore[attr-defined]
                if not self.finished:
                    self.finished = True
                    await self._leave()
            finally:
                if self._open:
                    self._open = False
                    self.state.drain.leave()

    async def _leave(self) -> None:
        if not self.cancel_requested and (not self.attended or self.lease_ms > 0):
            if self.attended:  # the grace period starts now
                with contextlib.suppress(*REDIS_DOWN):
                    await self.state.queue.renew_lease(self.job.id, self.lease_ms)
            return
        if not self._counted:
            self.state.metrics.jobs.labels(Cancelled.type).inc()
        await self.state.queue.cancel(self.job.id, until=self.job.deadline)

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


@dataclass(frozen=True)
class Ticket:
    """Who submits a job and how it may be read again (issue 17)."""

    owner: str = ""  # the submitting key's id (fair_share.owner_of)
    attended: bool = True  # False for POST /jobs: it runs with nobody reading it
    idempotency_key: str = ""  # the client's Idempotency-Key header, "" for none
    fingerprint: str = ""  # of the request body: a reused key with another body is refused
    webhook_url: str = ""


async def submit_request(
    state: AppState, body: GenerationFields, text: str, voice: str | None, request_id: str, ticket: Ticket
) -> JobRun:
    """`submit` for a request model of our own (/synthesize, /jobs, the websocket)."""
    params = body.generation_params()
    return await submit(
        state, text=text, voice=voice, params=params, seed=body.seed, request_id=request_id, ticket=ticket
    )


async def submit(
    state: AppState,
    *,
    text: str,
    voice: str | None,
    params: dict[str, Any],
    seed: int | None,
    request_id: str,
    speed: float = 1.0,
    ticket: Ticket | None = None,
) -> JobRun:
    """Validate, pin voice version and seed, and queue. Raises before anything is sent.
    With an Idempotency-Key seen before, the earlier job's run instead (nothing is queued)."""
    if state.drain.draining:
        raise state.queue.unavailable("this server is shutting down; retry")
    ticket = ticket or Ticket()
    params = build_params(params, state.settings.max_duration_s, state.settings.chunk_pause_s)
    check_audio_budget(text, params.get("max_duration_s"), speed, state.settings.max_request_audio_s)
    voice = voice or state.settings.default_voice
    label = label_of(ticket.owner, state.settings)
    try:
        etag = await state.voices.etag(voice) if voice else None
        job = _new_job(state, text, voice, etag, params, seed, request_id, ticket.owner)
        admitted = await state.queue.admit(job, _admission(state, job, ticket))
    except REDIS_DOWN as exc:
        raise state.queue.unavailable("queue unavailable") from exc
    except ServiceError as exc:
        state.metrics.jobs.labels(f"rejected_{exc.type}").inc()
        count_submission(state.metrics.registry, label, f"rejected_{exc.type}")
        raise
    if admitted.duplicate_of is not None:
        count_submission(state.metrics.registry, label, "duplicate")
        return await _earlier_run(state, admitted.job_id, admitted.duplicate_of, ticket)
    count_submission(state.metrics.registry, label, "admitted")
    extra = {
        "job_id": job.id,
        "position": admitted.position,
        "seed": job.seed,
        "voice": voice,
        "chars": len(text),
    }
    log.info("job queued", extra={**extra, "key": label})
    return JobRun(state, job, admitted.position, attended=ticket.attended)


def _new_job(
    state: AppState,
    text: str,
    voice: str | None,
    etag: str | None,
    params: dict[str, Any],
    seed: int | None,
    request_id: str,
    owner: str,
) -> Job:
    """The job, its seed fixed here so that any re-run reproduces it."""
    now = time.time()
    return Job(
        id=uuid.uuid4().hex,
        text=text,
        voice=voice,
        voice_etag=etag,
        params=params,
        seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
        submitted_at=now,
        deadline=now + state.settings.request_timeout_s,
        request_id=request_id,
        owner=owner,
    )


async def _earlier_run(state: AppState, job_id: str, fingerprint: str, ticket: Ticket) -> JobRun:
    """An Idempotency-Key seen before: its job's run, if the body is the same one."""
    if fingerprint != ticket.fingerprint:
        raise InvalidRequest(
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new request",
            param="Idempotency-Key",
        )
    log.info("idempotent retry: the earlier job", extra={"job_id": job_id})
    earlier = await attach(state, job_id, ticket.owner)
    earlier.duplicate = True
    return earlier


def _admission(state: AppState, job: Job, ticket: Ticket) -> Admission:
    settings = state.settings
    limit = limit_for(ticket.owner, settings)
    # Leased: its worker drops it once no reader has renewed the lease for the grace period.
    # Without a grace period a reader that leaves cancels it itself (JobRun.close).
    lease_ms = int(settings.resume_grace_s * 1000) if ticket.attended else 0
    record = JobRecord(
        id=job.id,
        job=job.to_fields()["job"],
        owner=ticket.owner,
        created_at=job.submitted_at,
        ttl_s=settings.job_ttl_s,
        attended=lease_ms > 0,
        active_key=owner_active(state.keys, ticket.owner) if limit > 0 else "",
        webhook_url=ticket.webhook_url,
    )
    idem = idempotency(state.keys, ticket.owner, ticket.idempotency_key) if ticket.idempotency_key else ""
    return Admission(
        record=record,
        idempotency_key=idem,
        fingerprint=ticket.fingerprint,
        owner_limit=limit,
        record_ttl_s=math.ceil(settings.request_timeout_s) + settings.job_ttl_s,
        lease_ms=lease_ms,
    )


async def find_record(state: AppState, job_id: str, owner: str) -> JobRecord:
    """The job's record, if `owner` may see it; NotFound (unknown, another key's, expired)."""
    record = await state.queue.record(job_id) if _JOB_ID.fullmatch(job_id) else None
    if record is None or record.owner != owner:
        # another key's job looks exactly like no job: its existence is not told
        raise NotFound(f"no job {job_id!r}", param="job_id")
    if record.terminal and record.finished_at is not None and time.time() > record.finished_at + record.ttl_s:
        raise NotFound(
            f"job {job_id!r} has expired: results are kept {record.ttl_s} s after a job ends", param="job_id"
        )
    return record


async def attach(state: AppState, job_id: str, owner: str, from_seq: int = 0) -> JobRun:
    """A run reading an existing job (a resume, an idempotent retry, GET /jobs/{id}/audio)."""
    record = await find_record(state, job_id, owner)
    run = JobRun(state, record.parsed_job(), 0, attended=record.attended, from_seq=from_seq)
    # reading a finished job's output may come after the job's own deadline
    run.follow_deadline = max(run.job.deadline, time.time() + state.settings.request_timeout_s)
    return run


def request_id_of(conn: HTTPConnection) -> str:
    return str(conn.scope.get("state", {}).get("request_id", ""))
