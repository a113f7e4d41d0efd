"""POST /synthesize: Bark's own endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...audio import STREAMABLE
from ...errors import InvalidRequest
from ..deps import Authorized, StateDep
from ..protocol import SynthesizeRequest
from ..responders import stream_audio, whole_file
from ..synthesis import request_id_of, submit

router = APIRouter(dependencies=[Authorized], tags=["synthesis"])

_AUDIO = {
    200: {"description": "The audio, in the requested format", "content": {"audio/wav": {}}},
    404: {"description": "Unknown voice"},
    422: {"description": "Invalid request"},
    429: {"description": "Queue full (see Retry-After)"},
    503: {"description": "No live worker or queue unreachable"},
    504: {"description": "Deadline exceeded"},
}


@router.post("/synthesize", responses=_AUDIO, response_class=Response)  # type: ignore[arg-type]
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
