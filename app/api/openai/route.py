"""POST /v1/audio/speech: OpenAI-compatible, so the official `openai` SDK works unchanged."""

from __future__ import annotations

import logging
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...core.errors import ModelNotFound
from ..audio import change_tempo
from ..deps import Authorized, StateDep
from ..jobs import IdempotencyKey, ticket_for
from ..protocol import COMMON_ERRORS, SpeechRequest, audio_content, error_responses
from ..responders import stream_audio, stream_sse
from ..serving import request_id_of, submit
from .voices import OPENAI_MODELS, resolve_voice

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Authorized], tags=["openai"])


_SPEECH: dict[int | str, dict[str, object]] = {
    200: {
        "description": "The audio, or with stream_format=sse its server-sent events",
        "content": audio_content("text/event-stream"),
    },
    **error_responses(*COMMON_ERRORS, 404, 429, 500, 503, 504, _404="Unknown voice or model"),
}


@router.post("/v1/audio/speech", response_class=Response, responses=_SPEECH)
async def speech(
    body: SpeechRequest, request: Request, state: StateDep, idempotency_key: IdempotencyKey = None
) -> Response:
    builtin = await state.voices.builtin()
    if body.model not in OPENAI_MODELS and body.model != builtin.model:
        raise ModelNotFound(f"model {body.model!r} is not served; use one of {sorted(OPENAI_MODELS)}")
    if body.instructions:
        # Bark is conditioned on text and a history prompt only: there is no way to steer it
        # with instructions, so they are accepted (SDK compatibility) and ignored, visibly.
        log.info("ignoring 'instructions' (Bark cannot follow them)")
    run = await submit(
        state,
        text=body.input,
        voice=resolve_voice(body.voice),
        params={},
        seed=None,
        request_id=request_id_of(request),
        speed=body.speed,
        ticket=ticket_for(request, state.settings, "/v1/audio/speech", body, idempotency_key, attended=True),
    )
    # Bark has no rate control: speed is a pitch-preserving time stretch of its output.
    tempo = None if body.speed == 1.0 else partial(change_tempo, speed=body.speed)
    if body.stream_format == "sse":
        return await stream_sse(run, request, body.response_format, tempo)
    # OpenAI streams its audio: every format is sent as each chunk is decoded.
    return await stream_audio(run, request, body.response_format, tempo)
