"""The one map from domain errors to HTTP: status codes, headers, and the error body.

Every failure leaves as {"error": {message, type, param, code}}: ours, FastAPI's, Starlette's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..core.errors import (
    BadRequest,
    Cancelled,
    Conflict,
    DeadlineExceeded,
    Forbidden,
    GenerationFailed,
    HeadersTooLarge,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    RequestTimeout,
    ServiceError,
    Unauthorized,
    Unavailable,
    UnknownVoice,
)

log = logging.getLogger(__name__)

STATUS: dict[type[ServiceError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    UnknownVoice: 404,
    ModelNotFound: 404,
    MethodNotAllowed: 405,
    RequestTimeout: 408,
    Conflict: 409,
    PayloadTooLarge: 413,
    HeadersTooLarge: 431,
    InvalidRequest: 422,
    QueueFull: 429,
    # nginx's "client closed request": only ever seen in logs and websocket close codes
    Cancelled: 499,
    GenerationFailed: 500,
    InternalError: 500,
    Unavailable: 503,
    DeadlineExceeded: 504,
}
# Starlette's own HTTPExceptions (404 route, 405 method, ...) in our shape.
_BY_STATUS: dict[int, type[ServiceError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    422: InvalidRequest,
}


def status_of(exc: ServiceError) -> int:
    return STATUS.get(type(exc), 500)


def error_body(exc: ServiceError) -> dict[str, Any]:
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": status_of(exc)}}


def error_headers(exc: ServiceError) -> dict[str, str]:
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return headers


def error_response(exc: ServiceError, **extra_headers: str) -> JSONResponse:
    headers = {**error_headers(exc), **extra_headers}
    return JSONResponse(error_body(exc), status_code=status_of(exc), headers=headers)


def _validation_error(exc: RequestValidationError) -> ServiceError:
    errors = exc.errors()
    if not errors:
        return InvalidRequest("invalid request")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "parse error")
        return InvalidRequest(f"request body is not valid JSON ({reason})")
    if first.get("type") == "missing":
        message = "field required"
    extra = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return InvalidRequest(f"{param or 'request'}: {message}{extra}", param=param)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = _BY_STATUS.get(exc.status_code, InternalError)(str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        response = error_response(err, **headers)
        response.status_code = exc.status_code
        return response

    for kind in (redis.ConnectionError, redis.TimeoutError):
        # Any Redis call a handler makes without its own handling: 503, never a bare 500.
        @app.exception_handler(kind)
        async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
            log.warning("redis unavailable: %s", exc)
            retry = request.app.state.bark.settings.retry_after_s
            return error_response(Unavailable("queue unavailable; retry later", retry_after_s=retry))

    @app.exception_handler(redis.ResponseError)
    async def _redis_refused(request: Request, exc: redis.ResponseError) -> JSONResponse:
        if not str(exc).startswith("OOM"):
            log.exception("redis refused a command")
            return error_response(InternalError("internal server error"))
        # at maxmemory (noeviction) Redis refuses writes: an overload, not a bug
        log.warning("redis is out of memory: %s", exc)
        retry = request.app.state.bark.settings.retry_after_s
        return error_response(Unavailable("storage is full; retry later", retry_after_s=retry))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(InternalError("internal server error"))


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path: Starlette's 405 names only the first
    route that matched the path (GET /voices), not POST /voices beside it."""
    methods: set[str] = set()
    for route in flat_routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def flat_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, with included routers opened (FastAPI keeps them as one entry each)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flat_routes(inner.routes)
        else:
            yield route
