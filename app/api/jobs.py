"""Jobs that outlive a connection (issue 17): the request and status models of /jobs, the
Idempotency-Key fingerprint, and the webhook URL check.

Where a job stands is its record in Redis (app/queue/wire.JobRecord, written with the job and
updated by its worker); this module only shows it to clients.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import Header
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from ..core.errors import InvalidRequest
from ..core.settings import Settings
from ..queue.wire import JobRecord
from .fair_share import owner_of
from .protocol import SynthesizeRequest
from .serving import Ticket

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 255


class JobSubmit(SynthesizeRequest):
    """POST /jobs: the /synthesize body (`stream` plays no part), plus a webhook."""

    webhook_url: str | None = Field(
        None,
        max_length=2048,
        description="http(s) URL POSTed the job's terminal state, signed (X-Bark-Signature: "
        "sha256=HMAC of the body); its host must be in BARK_WEBHOOK_HOSTS.",
    )

    def generation_params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"seed", "text", "voice", "format", "stream", "webhook_url"})


class JobError(BaseModel):
    type: str
    message: str


class JobStatus(BaseModel):
    """GET /jobs/{id}. `chunk_samples` lets a client that kept part of a raw stream find the
    chunk to resume from: the first N whole chunks are sum(chunk_samples[:N]) samples."""

    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    position: int | None = Field(None, description="Jobs ahead of it, when it was queued")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    queued_s: float | None = Field(None, description="Submission to a worker taking it")
    run_s: float | None = Field(None, description="Worker start to the end (or now)")
    attempt: int = Field(0, description="Deliveries to a worker (more than 1 after a worker died)")
    chunks_done: int = 0
    n_chunks: int | None = None
    chunk_samples: list[int] = Field(default_factory=list)
    expires_at: float | None = Field(None, description="When its result is deleted (after it ends)")
    error: JobError | None = None
    audio_url: str


def status_of_record(record: JobRecord, position: int | None = None) -> JobStatus:
    now = time.time()
    started, finished = record.started_at, record.finished_at
    return JobStatus(
        id=record.id,
        status=record.state,
        position=position,
        created_at=record.created_at,
        started_at=started,
        finished_at=finished,
        queued_s=round(started - record.created_at, 4) if started else None,
        run_s=round((finished or now) - started, 4) if started else None,
        attempt=record.attempt,
        chunks_done=record.chunks_done,
        n_chunks=record.n_chunks,
        chunk_samples=list(record.chunk_samples),
        expires_at=finished + record.ttl_s if finished else None,
        error=JobError(type=record.error_type, message=record.error_message) if record.error_type else None,
        audio_url=f"/jobs/{record.id}/audio",
    )


def fingerprint(route: str, body: BaseModel) -> str:
    """What makes two requests "the same" for an Idempotency-Key: route and full body."""
    return hashlib.sha256(f"{route}\n{body.model_dump_json()}".encode()).hexdigest()[:32]


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        max_length=MAX_IDEMPOTENCY_KEY,
        description="Retries with the same key get the same job (same id, same audio) for the "
        "result TTL; the same key with a different body is a 422.",
    ),
]


def ticket_for(
    conn: HTTPConnection,
    settings: Settings,
    route: str,
    body: BaseModel,
    idempotency_key: str | None,
    *,
    attended: bool,
    webhook: str = "",
) -> Ticket:
    key = idempotency_key or ""
    return Ticket(
        owner=owner_of(conn, settings),
        attended=attended,
        idempotency_key=key,
        fingerprint=fingerprint(route, body) if key else "",
        webhook_url=webhook,
    )


def check_webhook(url: str, settings: Settings) -> str:
    """The URL, if webhooks are on and its host is allow-listed; InvalidRequest otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("webhook_url must be an http(s) URL with a host", param="webhook_url")
    if not settings.webhook_hosts:
        raise InvalidRequest("webhooks are off on this server (no BARK_WEBHOOK_HOSTS)", param="webhook_url")
    if parts.hostname.lower() not in {h.lower() for h in settings.webhook_hosts}:
        raise InvalidRequest(f"webhook host {parts.hostname!r} is not allowed here", param="webhook_url")
    return url
