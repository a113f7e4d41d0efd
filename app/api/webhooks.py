"""Webhooks (issue 17): a job's terminal state POSTed to its webhook_url, signed, retried.

The API that queued the job follows it to its end (the same output stream a reader follows)
and then delivers its status (GET /jobs/{id}'s body). The body is signed with
HMAC-SHA256(BARK_WEBHOOK_SECRET, body), sent as `X-Bark-Signature: sha256=<hex>`; receivers
verify it with the raw body. Deliveries are retried with doubling delays up to
BARK_WEBHOOK_ATTEMPTS times; redirects are not followed (the allow-list checks one host).
A webhook in flight when its API stops is not delivered (at-most-once per API process).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging

import httpx

from ..core.errors import ServiceError
from ..core.settings import Settings
from ..queue.wire import is_terminal
from .jobs import status_of_record
from .state import AppState

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Bark-Signature"
TIMEOUT_S = 10.0
_TASKS: set[asyncio.Task[None]] = set()  # held so running deliveries are not collected


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def notify_when_done(state: AppState, job_id: str, url: str, deadline: float) -> None:
    """Start following the job; once it ends, deliver its status to `url`."""
    task = asyncio.create_task(_follow_then_deliver(state, job_id, url, deadline))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _follow_then_deliver(state: AppState, job_id: str, url: str, deadline: float) -> None:
    try:
        async for event in state.queue.follow(job_id, deadline + state.settings.retry_after_s):
            if is_terminal(event):
                break
    except ServiceError as exc:  # lost track of it (deadline, Redis): report what the record says
        log.warning("webhook: following job failed: %s", exc.message, extra={"job_id": job_id})
    record = await state.queue.record(job_id)
    if record is None:
        return
    body = status_of_record(record).model_dump_json().encode()
    await deliver(url, body, state.settings, job_id)


async def deliver(url: str, body: bytes, settings: Settings, job_id: str) -> bool:
    """POST until a 2xx, at most `webhook_attempts` times; False when given up."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(settings.webhook_secret, body),
        "X-Bark-Job-Id": job_id,
    }
    async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as client:
        for attempt in range(1, settings.webhook_attempts + 1):
            try:
                reply = await client.post(
                    url, content=body, headers={**headers, "X-Bark-Attempt": str(attempt)}
                )
                if 200 <= reply.status_code < 300:
                    log.info("webhook delivered", extra={"job_id": job_id, "attempt": attempt})
                    return True
                why = f"status {reply.status_code}"
            except httpx.HTTPError as exc:
                why = exc.__class__.__name__
            log.warning("webhook attempt %d failed: %s", attempt, why, extra={"job_id": job_id})
            if attempt < settings.webhook_attempts:
                await asyncio.sleep(settings.webhook_backoff_s * 2 ** (attempt - 1))
    log.error("webhook given up after %d attempts", settings.webhook_attempts, extra={"job_id": job_id})
    return False
