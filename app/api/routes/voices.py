"""GET/POST/DELETE /voices: built-in presets and uploaded .npz presets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile, status
from fastapi.responses import Response

from ...openai_voices import OPENAI_VOICES
from ..deps import Authorized, StateDep
from ..protocol import VoiceList, VoiceOut

router = APIRouter(dependencies=[Authorized], tags=["voices"])

DEMO_WARNING = (
    "the workers serve the built-in tiny checkpoint with RANDOM weights: audio is noise. "
    "Set BARK_MODEL (or --model) to a real Bark checkpoint."
)


@router.get("/voices")
async def list_voices(state: StateDep) -> VoiceList:
    builtin, voices = await state.voices.list()
    return VoiceList(
        model=builtin.model,
        demo=builtin.demo,
        warning=DEMO_WARNING if builtin.demo else None,
        data=voices,
        openai_voices=OPENAI_VOICES,
    )


@router.post("/voices", status_code=status.HTTP_201_CREATED)
async def upload_voice(
    state: StateDep,
    id: Annotated[str, Form(description="New preset id: letters, digits, '_' and '-'")],
    file: Annotated[UploadFile, File(description="An .npz with the three prompt arrays")],
    overwrite: Annotated[bool, Query()] = False,
) -> VoiceOut:
    data = await file.read()
    return await state.voices.upload(id, data, overwrite=overwrite)


@router.delete("/voices/{voice_id:path}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_voice(voice_id: str, state: StateDep) -> Response:
    await state.voices.delete(voice_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
