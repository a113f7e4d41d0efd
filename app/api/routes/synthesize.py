"""POST /synthesize: Bark's own endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..deps import Authorized, StateDep
from ..jobs import IdempotencyKey, ticket_for
from ..protocol import COMMON_ERRORS, SynthesizeRequest, audio_content, error_responses
from ..responders import stream_audio, whole_file
from ..serving import request_id_of, submit_request

router = APIRouter(dependencies=[Authorized], tags=["synthesis"])


_AUDIO: dict[int | str, dict[str, object]] = {
    200: {"description": "The audio, in the requested format", "content": audio_content()},
    **error_responses(*COMMON_ERRORS, 404, 429, 500, 503, 504, _404="Unknown voice"),
}


@router.post("/synthesize", responses=_AUDIO, response_class=Response)
async def synthesize(
    body: SynthesizeRequest, request: Request, state: StateDep, idempotency_key: IdempotencyKey = None
) -> Response:
    ticket = ticket_for(request, state.settings, "/synthesize", body, idempotency_key, attended=True)
    run = await submit_request(state, body, body.text, body.voice, request_id_of(request), ticket)
    if body.stream:
        return await stream_audio(run, request, body.format)
    return await whole_file(run, request, body.format)
