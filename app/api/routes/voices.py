"""GET/POST/DELETE /voices: built-in presets and uploaded .npz presets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile, status
from fastapi.responses import Response

from bark_core.voices import VOICE_ID_RE

from ...core.model_choice import random_weights_warning
from ..deps import Authorized, StateDep
from ..openai.voices import OPENAI_VOICES
from ..protocol import COMMON_ERRORS, VoiceList, VoiceOut, error_responses

router = APIRouter(dependencies=[Authorized], tags=["voices"])


@router.get("/voices", responses=error_responses(401, 503))
async def list_voices(state: StateDep) -> VoiceList:
    builtin, voices = await state.voices.list()
    return VoiceList(
        model=builtin.model,
        demo=builtin.demo,
        warning=random_weights_warning(builtin.model) if builtin.demo else None,
        data=voices,
        openai_voices=OPENAI_VOICES,
    )


@router.post(
    "/voices", status_code=status.HTTP_201_CREATED, responses=error_responses(*COMMON_ERRORS, 409, 503)
)
async def upload_voice(
    state: StateDep,
    id: Annotated[
        str, Form(description="New preset id: letters, digits, '_' and '-'", pattern=VOICE_ID_RE.pattern)
    ],
    file: Annotated[UploadFile, File(description="An .npz with the three prompt arrays")],
    overwrite: Annotated[bool, Query()] = False,
) -> VoiceOut:
    data = await file.read()
    return await state.voices.upload(id, data, overwrite=overwrite)


@router.delete(
    "/voices/{voice_id:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 404, 409, 413, 422, 503),
)
async def delete_voice(
    voice_id: Annotated[str, Path(json_schema_extra={"pattern": VOICE_ID_RE.pattern})],
    state: StateDep,
) -> Response:
    # The pattern is documented, not enforced here: a built-in id (with '/') answers 409.
    await state.voices.delete(voice_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
