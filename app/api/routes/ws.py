"""WS /ws/synthesize: JSON events and binary PCM frames, with client-side cancel.

Protocol: the client's first message is the /synthesize JSON. The server answers
`queued` {position, job_id, request_id, seed}, `started`, then per text chunk a `chunk`
{seq, samples, text} event followed by one binary frame of s16le 24 kHz mono PCM, and
finally `done` {duration_s, rtf, samples, chunks} or `error` {error: {...}}. The client may
send {"type": "cancel"} at any time. After the terminal event the server closes the
socket: 1000 after done, 4000 + status after an error (4422, 4429, 4499, 4503, ...).
A message larger than BARK_MAX_WS_MESSAGE_BYTES closes it with 1009.
A client whose socket dropped sends {"type": "resume", "job_id", "last_seq"} as its first
message instead, and gets the job's events and chunks after last_seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from bark_core.audio import pcm16_samples

from ...core.errors import Cancelled, Forbidden, InvalidRequest, ServiceError, Unauthorized
from ...queue.wire import Chunk, Done, Event, Started
from ..deps import key_is_valid, presented_key
from ..errors import error_body, status_of
from ..fair_share import owner_of
from ..protocol import (
    CheckEvent,
    ChunkEvent,
    DoneEvent,
    ErrorBody,
    ErrorEvent,
    QueuedEvent,
    StartedEvent,
    SynthesizeRequest,
)
from ..serving import JobRun, Ticket, attach, request_id_of, submit_request
from ..state import AppState

log = logging.getLogger(__name__)
router = APIRouter(tags=["synthesis"])

FIRST_MESSAGE_TIMEOUT_S = 30.0
CLOSE_TOO_BIG = 1009


def origin_allowed(ws: WebSocket, allowed: list[str]) -> bool:
    """No Origin (not a browser), an allow-listed one, or same-origin when no list is set."""
    origin = ws.headers.get("origin")
    if origin is None or "*" in allowed or origin in allowed:
        return True
    if allowed:
        return False
    return urlsplit(origin).netloc == ws.headers.get("host")


async def _deny(ws: WebSocket, err: ServiceError) -> None:
    """Refuse the handshake with an HTTP error body where the server can, else close 1008."""
    log.info("websocket refused: %s", err.message, extra={"reason": err.type, "param": err.param})
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse(error_body(err), status_code=status_of(err)))
    else:
        await ws.close(code=1008, reason=err.message[:120])


async def _fail(ws: WebSocket, err: ServiceError) -> None:
    status = status_of(err)
    body = ErrorBody(message=err.message, type=err.type, param=err.param, code=status)
    with contextlib.suppress(Exception):  # the client may be gone already
        await ws.send_text(ErrorEvent(error=body).model_dump_json())
        await ws.close(code=4000 + status if 0 < status < 1000 else 1011)


def _parse_first(raw: str, limit: int) -> SynthesizeRequest:
    if len(raw.encode()) > limit:
        raise _TooBig()
    try:
        # Parsed as the HTTP routes parse a body (stdlib JSON, then the model), so every route
        # takes and refuses the same texts with the same messages.
        message = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest("message is not valid JSON") from exc
    try:
        return SynthesizeRequest.model_validate(message)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise InvalidRequest(f"{param or 'message'}: {first.get('msg')}", param=param) from exc


class _TooBig(Exception):
    pass


async def _first_text(ws: WebSocket) -> str:
    """The first message, which must be a text frame (a binary one is a 4422, not a crash)."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise InvalidRequest("the first message must be a JSON text frame, not binary", param="message")
    return str(text)


@router.websocket("/ws/synthesize")
async def ws_synthesize(ws: WebSocket) -> None:
    state: AppState = ws.app.state.bark
    settings = state.settings
    if not origin_allowed(ws, settings.ws_origins):
        await _deny(ws, Forbidden("websocket Origin not allowed", param="origin"))
        return
    if not key_is_valid(settings.all_keys, presented_key(ws)):
        await _deny(ws, Unauthorized("missing or invalid API key"))
        return
    await ws.accept()
    try:
        raw = await asyncio.wait_for(_first_text(ws), FIRST_MESSAGE_TIMEOUT_S)
        resume = _resume_of(raw)
        if resume is not None:  # a client back for its job: every chunk after last_seq
            run = await attach(state, resume.job_id, owner_of(ws, settings), from_seq=resume.last_seq + 1)
        else:
            body = _parse_first(raw, settings.max_ws_message_bytes)
            ticket = Ticket(owner=owner_of(ws, settings))
            run = await submit_request(state, body, body.text, body.voice, request_id_of(ws), ticket)
    except _TooBig:
        await ws.close(code=CLOSE_TOO_BIG, reason="message too big")
        return
    except TimeoutError:
        await _fail(ws, InvalidRequest("no request message within 30 s"))
        return
    except WebSocketDisconnect:
        return
    except ServiceError as err:
        await _fail(ws, err)
        return
    await _serve_job(ws, run)


async def _serve_job(ws: WebSocket, run: JobRun) -> None:
    gone = asyncio.Event()  # set on cancel message or disconnect
    asked_to_cancel = asyncio.Event()  # the cancel message, said apart in the error event

    async def listen() -> None:
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is not None and _is_cancel(text):
                    log.info("client cancelled", extra={"job_id": run.job.id})
                    run.cancel_requested = True
                    asked_to_cancel.set()
                    break
        finally:
            gone.set()

    async def client_gone() -> bool:
        return gone.is_set()

    listener = asyncio.create_task(listen())
    try:
        await ws.send_text(
            QueuedEvent(
                position=run.position, job_id=run.job.id, request_id=run.job.request_id, seed=run.seed
            ).model_dump_json()
        )
        async for event in run.events(client_gone):
            await _send_event(ws, run, event)
    except ServiceError as err:
        if isinstance(err, Cancelled) and asked_to_cancel.is_set():
            err = Cancelled("cancelled by the client")
        await _fail(ws, err)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away mid-send
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
        await run.close()


async def _send_event(ws: WebSocket, run: JobRun, event: Event) -> None:
    if isinstance(event, Started):
        await ws.send_text(StartedEvent(worker=event.worker, batch=event.batch).model_dump_json())
    elif isinstance(event, Chunk):
        chunk = ChunkEvent(
            seq=event.seq,
            samples=pcm16_samples(event.pcm),
            text=event.text,
            n_chunks=event.n_chunks,
            estimate_s=event.estimate_s,
            duration_s=event.duration_s,
            attempts=event.attempts,
            checks=[CheckEvent(**dataclasses.asdict(c)) for c in event.checks],
            all_failed=event.all_failed,
            trimmed_s=event.trimmed_s,
        )
        await ws.send_text(chunk.model_dump_json())
        await ws.send_bytes(event.pcm)
    elif isinstance(event, Done):
        done = DoneEvent(
            duration_s=round(run.duration_s(), 4),
            rtf=event.rtf,
            samples=run.samples,
            chunks=run.chunks,
            retried_chunks=event.retried_chunks,
            failed_chunks=event.failed_chunks,
        )
        await ws.send_text(done.model_dump_json())
        await ws.close(code=1000)


class ResumeMessage(BaseModel):
    """{"type": "resume", "job_id": ..., "last_seq": N}: the first message of a client that
    lost its socket; it gets the job's chunks after seq N (-1: all of them)."""

    type: Literal["resume"]
    job_id: str = Field(..., max_length=64)
    last_seq: int = Field(-1, ge=-1, le=100_000)


def _resume_of(raw: str) -> ResumeMessage | None:
    if '"resume"' not in raw:
        return None
    try:
        return ResumeMessage.model_validate_json(raw)
    except ValidationError:
        return None


def _is_cancel(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "cancel"
