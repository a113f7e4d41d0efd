"""POST /synthesize: Bark's own endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...audio import FORMATS, STREAMABLE
from ...errors import InvalidRequest
from ..deps import Authorized, StateDep
from ..protocol import COMMON_ERRORS, SynthesizeRequest, error_responses
from ..responders import stream_audio, whole_file
from ..synthesis import request_id_of, submit

router = APIRouter(dependencies=[Authorized], tags=["synthesis"])


def audio_content(*extra: str) -> dict[str, dict[str, object]]:
    """OpenAPI `content` of an audio response: every format's media type."""
    types = [info.media_type for info in FORMATS.values()] + list(extra)
    return {t: {"schema": {"type": "string", "format": "binary"}} for t in types}


_AUDIO: dict[int | str, dict[str, object]] = {
    200: {"description": "The audio, in the requested format", "content": audio_content()},
    **error_responses(*COMMON_ERRORS, 404, 429, 500, 503, 504, _404="Unknown voice"),
}


@router.post("/synthesize", responses=_AUDIO, response_class=Response)
async def synthesize(body: SynthesizeRequest, request: Request, state: StateDep) -> Response:
    if body.stream and body.format not in STREAMABLE:
        raise InvalidRequest(
            f"stream=true supports formats {sorted(STREAMABLE)}; got {body.format!r}",
            param="format",
        )
    run = await submit(
        state,
        text=body.text,
        voice=body.voice,
        params=body.generation_params(),
        seed=body.seed,
        request_id=request_id_of(request),
    )
    if body.stream:
        return await stream_audio(run, request, body.format)
    return await whole_file(run, request, body.format)
