"""The FastAPI application factory. One app per call: tests build many, with their settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..core.settings import Settings
from ..queue.connection import REDIS_DOWN
from . import errors
from .middleware import ApiKeyGate, BodyLimit, EdgeChecks, HeadAsGet, RequestContext
from .openai import route as openai_route
from .routes import docs, health, jobs, synthesize, voices, ws
from .state import AppState

log = logging.getLogger(__name__)


ROUTERS = (
    synthesize.router,
    jobs.router,
    openai_route.router,
    ws.router,
    voices.router,
    health.router,
    docs.router,
)


def create_app(settings: Settings, redis_url: str | None = None) -> FastAPI:
    url = redis_url or settings.redis_url
    if url is None:
        raise ValueError("the API needs a Redis URL (BARK_REDIS_URL, or bark-serve's embedded one)")
    state = AppState.build(settings, url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await state.queue.ensure_group()
        except REDIS_DOWN as exc:
            # Start anyway: requests answer 503 until Redis is back.
            log.warning("redis unreachable at start-up: %s", exc)
        resender = asyncio.create_task(state.queue.resend_cancels())
        yield
        resender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await resender
        await state.redis.aclose()

    app = FastAPI(
        title="bark-serve",
        version="0.1.0",
        description="Bark text-to-speech over HTTP and websockets.",
        lifespan=lifespan,
        # Served by routes.docs instead, behind the API key.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.bark = state
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    _install_static(app, settings)
    _install_middleware(app, settings, state)
    return app


def _install_middleware(app: FastAPI, settings: Settings, state: AppState) -> None:
    # Outermost first in the request path: request id -> HEAD as GET -> header count and Host
    # -> CORS -> key check -> body limit -> app. Nothing before the key check reads the body.
    app.add_middleware(
        BodyLimit,
        default_limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
        timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(ApiKeyGate, keys=settings.all_keys)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "x-api-key", "x-request-id", "idempotency-key"],
            expose_headers=["x-request-id", "x-bark-seed", "x-bark-job-id", "location"],
        )
    app.add_middleware(EdgeChecks, settings=settings)
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestContext, metrics=state.metrics)


def _install_static(app: FastAPI, settings: Settings) -> None:
    """The playground page at / (another team's app/static/index.html), when it exists."""
    static = settings.static_dir

    @app.get("/", include_in_schema=False, response_model=None)
    async def index() -> Response:
        page = static / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return JSONResponse({"service": "bark-serve", "docs": "/docs", "voices": "/voices"})

    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
