"""Turning a JobRun into an HTTP response: a whole file, a chunked stream, or SSE.

Streams of every format are encoded as each chunk arrives, by one encoder kept open for the
job (app/api/audio.py's open_stream), in a worker thread so the event loop never encodes.

Streams start only once the first audio (or the job's error) is in, so a job that fails
early still gets a proper status code. After the headers, a failure raises inside the body
iterator: the server then cuts the connection without the final chunk, and the client sees
a truncated transfer, never a short file that looks complete.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from bark_core.audio import pcm16_samples
from bark_core.constants import SAMPLE_RATE

from ..core.errors import ServiceError
from ..queue.wire import Chunk, Event, is_terminal
from .audio import FORMATS, encode, open_stream
from .serving import JobRun

log = logging.getLogger(__name__)

Transform = Callable[[bytes], bytes]  # s16le PCM in, s16le PCM out (e.g. a tempo change)


class StreamAborted(RuntimeError):
    """Raised inside a streaming body to abort the transfer after the headers went out."""


class _ClosingStream(StreamingResponse):
    """A StreamingResponse that always closes its run, however the stream ends."""

    def __init__(self, run: JobRun, content: AsyncIterator[bytes], **kwargs: object) -> None:
        super().__init__(content, **kwargs)  # type: ignore[arg-type]
        self.run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
                await self.run.close()


def audio_headers(run: JobRun, fmt: str) -> dict[str, str]:
    return {
        "X-Bark-Seed": str(run.seed),
        "X-Bark-Job-Id": run.job.id,
        "Content-Disposition": f'inline; filename="speech.{FORMATS[fmt].extension}"',
        "Cache-Control": "no-store",
    }


async def whole_file(run: JobRun, request: Request, fmt: str, transform: Transform | None = None) -> Response:
    try:
        pcm = await run.collect(request.is_disconnected)
    finally:
        await run.close()
    if transform is not None:
        pcm = await anyio.to_thread.run_sync(transform, pcm)
    body = await anyio.to_thread.run_sync(encode, pcm, fmt)
    headers = audio_headers(run, fmt)
    headers["X-Bark-Audio-Duration"] = f"{pcm16_samples(pcm) / SAMPLE_RATE:.3f}"
    return Response(body, media_type=FORMATS[fmt].media_type, headers=headers)


async def _first_audio(run: JobRun, request: Request) -> tuple[AsyncIterator[Event], list[Event]]:
    """Wait for the first chunk (or the end), so early failures still get a status code."""
    events = run.events(request.is_disconnected)
    head: list[Event] = []
    try:
        async for event in events:
            head.append(event)
            if isinstance(event, Chunk) or is_terminal(event):
                break
    except BaseException:
        await run.close()
        raise
    return events, head


async def _pcm_body(run: JobRun, events: AsyncIterator[Event], head: list[Event]) -> AsyncIterator[bytes]:
    for event in head:
        if isinstance(event, Chunk):
            yield event.pcm
    try:
        async for event in events:
            if isinstance(event, Chunk):
                yield event.pcm
    except ServiceError as exc:
        log.warning(
            "aborting stream after headers: %s",
            exc.message,
            extra={"job_id": run.job.id, "error_type": exc.type},
        )
        raise StreamAborted(exc.message) from exc


async def _encoded_body(
    run: JobRun, events: AsyncIterator[Event], head: list[Event], fmt: str, transform: Transform | None
) -> AsyncIterator[tuple[int, bytes]]:
    """(samples, encoded bytes) per text chunk, then (0, the encoder's tail)."""
    encoder = open_stream(fmt)

    def encode_chunk(pcm: bytes) -> tuple[int, bytes]:
        # Per text chunk: each is a sentence or more, so stretching them apart is seamless.
        if transform is not None:
            pcm = transform(pcm)
        return pcm16_samples(pcm), encoder.feed(pcm)

    try:
        async for pcm in _pcm_body(run, events, head):
            yield await anyio.to_thread.run_sync(encode_chunk, pcm)
        yield 0, await anyio.to_thread.run_sync(encoder.finish)
    finally:
        encoder.close()


async def stream_audio(
    run: JobRun, request: Request, fmt: str, transform: Transform | None = None
) -> Response:
    """Chunked audio as each text chunk is decoded; `wav` gets a header with unknown
    (0xFFFFFFFF) sizes first, mp3 and flac carry no length either (a live stream's)."""
    events, head = await _first_audio(run, request)

    async def body() -> AsyncIterator[bytes]:
        async for _, piece in _encoded_body(run, events, head, fmt, transform):
            if piece:
                yield piece

    return _ClosingStream(run, body(), media_type=FORMATS[fmt].media_type, headers=audio_headers(run, fmt))


async def stream_sse(run: JobRun, request: Request, fmt: str, transform: Transform | None = None) -> Response:
    """OpenAI's stream_format=sse: speech.audio.delta events (base64 audio), then done.

    A delta per text chunk, as it is decoded; the deltas joined are one file of `fmt`."""
    events, head = await _first_audio(run, request)

    def delta(audio: bytes) -> bytes:
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode()}
        return f"data: {json.dumps(event)}\n\n".encode()

    async def body() -> AsyncIterator[bytes]:
        samples = 0
        async for n, piece in _encoded_body(run, events, head, fmt, transform):
            samples += n
            if piece:
                yield delta(piece)
        done = {
            "type": "speech.audio.done",
            "usage": {
                "input_tokens": len(run.job.text),
                "output_tokens": samples,
                "total_tokens": len(run.job.text) + samples,
            },
        }
        yield f"data: {json.dumps(done)}\n\n".encode()

    headers = audio_headers(run, fmt)
    headers.pop("Content-Disposition")
    return _ClosingStream(run, body(), media_type="text/event-stream", headers=headers)
