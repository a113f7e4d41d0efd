"""/healthz (process alive), /readyz (Redis and a loaded worker), /metrics (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ...core.model_choice import random_weights_warning
from ...queue.connection import REDIS_DOWN
from ..deps import Authorized, StateDep, key_is_valid, presented_key
from ..protocol import error_responses

router = APIRouter(tags=["health"])
_WORKER_FIELDS = (
    "id",
    "host",
    "pid",
    "model",
    "device",
    "dtype",
    "is_random_demo",
    "state",
    "jobs_done",
    "batch_size",
    "checks",  # each chunk check: "on", or why it is off (issue 16)
)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
async def readyz(state: StateDep, request: Request) -> JSONResponse:
    """Anyone may ask whether the service is ready; only a caller with a key (when keys are
    set) learns its model, workers, hosts and pids."""
    if state.drain.draining:
        raise state.queue.unavailable("shutting down: finishing the syntheses in flight")
    try:
        await state.redis.ping()
        workers = await state.queue.workers()
        builtin = await state.voices.builtin()
    except REDIS_DOWN as exc:
        raise state.queue.unavailable(f"redis unreachable: {exc.__class__.__name__}") from exc
    ready = [w for w in workers if w.ready]
    if not ready:
        loading = sum(1 for w in workers if w.state == "loading")
        raise state.queue.unavailable(
            f"no worker has its model loaded ({len(workers)} live, {loading} loading)"
        )
    if not key_is_valid(state.settings.all_keys, presented_key(request)):
        return JSONResponse({"status": "ready"})
    demo = any(w.is_random_demo for w in ready)
    model = builtin.model or ready[0].model
    body: dict[str, Any] = {
        "status": "ready",
        "model": model,
        "demo": demo,
        "warning": random_weights_warning(model) if demo else None,
        "workers": [{k: getattr(w, k) for k in _WORKER_FIELDS} for w in ready],
    }
    return JSONResponse(body)


_PROMETHEUS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition",
        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/metrics",
    dependencies=[Authorized],
    response_class=Response,
    responses={**_PROMETHEUS, **error_responses(401)},
)
async def metrics(state: StateDep) -> Response:
    m = state.metrics
    try:
        stats = await state.queue.stats()
        live = await state.queue.workers()
        m.queue_waiting.set(stats.waiting)
        m.queue_running.set(stats.running)
        m.queue_dead.set(stats.dead)
        m.workers.set(len(live))
    except REDIS_DOWN:
        m.workers.set(0)  # the scrape still answers; queue gauges keep their last value
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
