"""/jobs: submit a synthesis and come back for it (issue 17). Thin: app/api/jobs.py and
app/api/serving.py hold the logic."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from ...core.errors import Cancelled, Conflict
from ..audio import AudioFormat
from ..deps import Authorized, StateDep
from ..fair_share import owner_of
from ..jobs import IdempotencyKey, JobStatus, JobSubmit, check_webhook, status_of_record, ticket_for
from ..protocol import COMMON_ERRORS, audio_content, error_responses
from ..responders import stream_audio, whole_file
from ..serving import attach, find_record, request_id_of, submit_request
from ..webhooks import notify_when_done

router = APIRouter(dependencies=[Authorized], tags=["jobs"])

_GONE = "Unknown job, another key's job, or expired (the message says which)"


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobStatus,
    responses=error_responses(*COMMON_ERRORS, 404, 429, 503, _404="Unknown voice"),
)
async def create_job(
    body: JobSubmit, request: Request, state: StateDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Queue a synthesis that runs whether or not anyone reads it; poll GET /jobs/{id}.
    An Idempotency-Key header makes retries return the same job."""
    webhook = check_webhook(body.webhook_url, state.settings) if body.webhook_url else ""
    ticket = ticket_for(
        request, state.settings, "/jobs", body, idempotency_key, attended=False, webhook=webhook
    )
    run = await submit_request(state, body, body.text, body.voice, request_id_of(request), ticket)
    await run.close()  # the job runs on; this request only queued it
    if webhook and not run.duplicate:
        notify_when_done(state, run.job.id, webhook, run.job.deadline)
    record = await find_record(state, run.job.id, ticket.owner)
    view = status_of_record(record, position=run.position)
    location = f"/jobs/{run.job.id}"
    headers = {"Location": location, "X-Bark-Job-Id": run.job.id, "X-Bark-Seed": str(run.seed)}
    return JSONResponse(view.model_dump(), status_code=202, headers=headers)


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=error_responses(401, 404, _404=_GONE))
async def get_job(job_id: str, request: Request, state: StateDep) -> JobStatus:
    return status_of_record(await find_record(state, job_id, owner_of(request, state.settings)))


@router.get(
    "/jobs/{job_id}/audio",
    response_class=Response,
    responses={
        200: {
            "description": "The audio: whole once done; raw formats stream while it runs",
            "content": audio_content(),
        },
        **error_responses(401, 404, 409, 422, _404=_GONE, _409="The job failed or was cancelled"),
    },
)
async def job_audio(
    job_id: str,
    request: Request,
    state: StateDep,
    format: AudioFormat = "wav",
    from_chunk: Annotated[int, Query(ge=0, le=100_000, description="Skip the chunks before this one")] = 0,
) -> Response:
    owner = owner_of(request, state.settings)
    record = await find_record(state, job_id, owner)
    if record.state in ("failed", "cancelled"):
        raise Conflict(f"job {job_id} {record.state}: {record.error_message}", param="job_id")
    run = await attach(state, job_id, owner, from_seq=from_chunk)
    try:
        if record.state == "done":
            return await whole_file(run, request, format)
        return await stream_audio(run, request, format)
    except Cancelled as exc:  # cancelled since the record was read: before any audio went out
        raise Conflict(f"job {job_id} cancelled: {exc.message}", param="job_id") from exc


@router.delete(
    "/jobs/{job_id}", status_code=202, response_model=JobStatus, responses=error_responses(401, 404)
)
async def cancel_job(job_id: str, request: Request, state: StateDep) -> JobStatus:
    """Cancel: the worker drops the job within one decode step. A finished job is left as it is."""
    record = await find_record(state, job_id, owner_of(request, state.settings))
    if not record.terminal:
        await state.queue.cancel(job_id, until=record.parsed_job().deadline)
    return status_of_record(record)
