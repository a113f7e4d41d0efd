"""GET/POST/DELETE /voices: built-in presets and uploaded .npz presets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile, status
from fastapi.responses import Response

from bark_core.voices import VOICE_ID_RE, language_of

from ...core.model_choice import random_weights_warning
from ..deps import Authorized, CallerDep, StateDep
from ..openai.voices import OPENAI_VOICES
from ..protocol import COMMON_ERRORS, MAX_VOICE_CHARS, MAX_VOICE_PAGE, VoiceList, VoiceOut, error_responses
from ..voice_catalog import VoiceLimits, version_of

router = APIRouter(dependencies=[Authorized], tags=["voices"])


@router.get("/voices", responses=error_responses(401, 422, 503))
async def list_voices(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=MAX_VOICE_PAGE, description="Presets per page.")] = 500,
    after: Annotated[
        str | None, Query(max_length=MAX_VOICE_CHARS, description="List ids after this one (next_after).")
    ] = None,
) -> VoiceList:
    builtin, voices, more = await state.voices.list(limit, after)
    by_language: dict[str, dict[str, list[str]]] = {}
    other = []
    for voice_id in sorted(builtin.ids):
        lang, version = language_of(voice_id), version_of(voice_id)
        if lang and version:
            by_language.setdefault(lang, {}).setdefault(version, []).append(voice_id)
        else:
            other.append(voice_id)
    return VoiceList(
        model=builtin.model,
        demo=builtin.demo,
        warning=random_weights_warning(builtin.model) if builtin.demo else None,
        data=voices,
        has_more=more,
        next_after=voices[-1].id if more and voices else None,
        by_language=by_language,
        other=other,
        openai_voices=OPENAI_VOICES,
    )


@router.post(
    "/voices",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*COMMON_ERRORS, 403, 409, 503, _403="Another API key's preset"),
)
async def upload_voice(
    state: StateDep,
    caller: CallerDep,
    id: Annotated[
        str, Form(description="New preset id: letters, digits, '_' and '-'", pattern=VOICE_ID_RE.pattern)
    ],
    file: Annotated[UploadFile, File(description="An .npz with the three prompt arrays")],
    overwrite: Annotated[bool, Query()] = False,
) -> VoiceOut:
    data = await file.read()
    limits = VoiceLimits.of(state.settings)
    return await state.voices.upload(
        id, data, overwrite=overwrite, owner=caller.owner, admin=caller.admin, limits=limits
    )


@router.delete(
    "/voices/{voice_id:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 409, 413, 422, 503, _403="Another API key's preset"),
)
async def delete_voice(
    voice_id: Annotated[str, Path(json_schema_extra={"pattern": VOICE_ID_RE.pattern})],
    state: StateDep,
    caller: CallerDep,
) -> Response:
    # The pattern is documented, not enforced here: a built-in id (with '/') answers 409.
    await state.voices.delete(voice_id, owner=caller.owner, admin=caller.admin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
