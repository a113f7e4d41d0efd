"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streams and hide aborts)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

import anyio
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import (
    BadRequest,
    HeadersTooLarge,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    Unauthorized,
)
from ..core.logs import request_id_var
from ..core.settings import Settings
from .deps import key_is_valid, presented_key
from .errors import error_body, error_headers, status_of
from .metrics import Metrics

log = logging.getLogger("bark.access")
_GOOD_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
CLIENT_GONE = 499  # nginx's "client closed request"
# Routes anyone may call: liveness/readiness probes and the playground page.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/"})
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


async def send_error(send: Send, err: ServiceError) -> None:
    """Our error shape as a whole response, and close the connection: whatever the client
    still sends (an unread body) is never read."""
    body = json.dumps(error_body(err)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error_headers(err).items()]
    await send({"type": "http.response.start", "status": status_of(err), "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Request id (kept from X-Request-Id when sane), response header, one access log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _GOOD_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status = 0
        failed = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif kind == "websocket.accept":
                status = 101
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif kind == "websocket.close" and not status:
                status = 403  # closed before the handshake completed
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            failed = True
            raise
        finally:
            # No response and no error: the client left before one (mid-body): 499, not 500.
            status = status or (500 if failed else CLIENT_GONE)
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            seconds = time.perf_counter() - started
            if scope["type"] == "http":
                self.metrics.requests.labels(path, str(status)).inc()
            log.info(
                "%s %s %s",
                scope.get("method", "WS"),
                scope["path"],
                status,
                extra={"status": status, "route": path, "seconds": round(seconds, 4)},
            )
            request_id_var.reset(token)


class BodyLimit:
    """Reads the request body up front, up to a limit (413 past it), then replays it.

    Bodies here are small (JSON, or a preset of a few MB), and reading them before the
    app runs means a too-large body is refused with our error shape whether or not it
    declared a Content-Length.
    """

    def __init__(self, app: ASGIApp, default_limit: int, upload_limit: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit
        self.timeout_s = timeout_s

    def _limit(self, scope: Scope) -> int:
        is_upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/voices"
        return self.upload_limit if is_upload else self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        chunks: list[bytes] = []
        with anyio.move_on_after(self.timeout_s) as timer:
            complete = await self._read(receive, chunks, limit)
        if timer.cancelled_caught:
            err = RequestTimeout(f"request body not received within {self.timeout_s:g} s")
            await send_error(send, err)
            return
        if complete is None:
            return  # the client went away
        if not complete:
            await self._refuse(send, limit)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # then: http.disconnect, when the client goes

        await self.app(scope, replay, send)

    @staticmethod
    async def _read(receive: Receive, chunks: list[bytes], limit: int) -> bool | None:
        """Body chunks into `chunks`: True when whole, False past the limit, None on disconnect."""
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return False
            chunks.append(body)
            if not message.get("more_body", False):
                return True

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        await send_error(send, PayloadTooLarge(f"request body exceeds {limit} bytes"))


class ApiKeyGate:
    """The key check, before anything reads the body: a keyless request costs its head only.

    Websockets check the key in their route (after the Origin check), to refuse the handshake
    with a body; the routes' `Authorized` dependency stays as a second check.
    """

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or _is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not key_is_valid(self.keys, presented_key(HTTPConnection(scope))):
            await send_error(send, Unauthorized("missing or invalid API key (Authorization: Bearer <key>)"))
            return
        await self.app(scope, receive, send)


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/static/")


class EdgeChecks:
    """Before any route: a bounded header count and an allowed Host (DNS rebinding)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_headers = settings.max_header_count
        self.max_head_bytes = settings.max_header_bytes
        hosts = settings.allowed_hosts or (["*"] if settings.all_keys else list(LOOPBACK_HOSTS))
        self.any_host = "*" in hosts
        self.hosts = frozenset(h.lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if len(headers) > self.max_headers:
            err: ServiceError = HeadersTooLarge(f"more than {self.max_headers} request headers")
            await self._refuse(scope, send, err)
            return
        # h11 bounds a head that arrives in pieces; one that came whole is measured here
        head = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
        if head + sum(len(k) + len(v) + 4 for k, v in headers) > self.max_head_bytes:
            err = HeadersTooLarge(f"request head exceeds {self.max_head_bytes} bytes")
            await self._refuse(scope, send, err)
            return
        if not self.any_host and scope["path"] not in PROBE_PATHS and not self._host_ok(headers):
            await self._refuse(scope, send, BadRequest("Host header not allowed", param="host"))
            return
        await self.app(scope, receive, send)

    def _host_ok(self, headers: list[tuple[bytes, bytes]]) -> bool:
        raw = dict(headers).get(b"host", b"").decode("latin-1").strip().lower()
        # "[::1]:8000" -> "[::1]", "localhost:8000" -> "localhost"
        name = raw[: raw.find("]") + 1] if raw.startswith("[") else raw.partition(":")[0]
        return name in self.hosts

    @staticmethod
    async def _refuse(scope: Scope, send: Send, err: ServiceError) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": err.message})
            log.info("websocket refused: %s", err.message, extra={"reason": err.message})
            return
        await send_error(send, err)


class HeadAsGet:
    """HEAD on a GET route: the GET response's status and headers, without its body
    (FastAPI registers GET routes for GET alone; probes and link checkers use HEAD)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_head(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        as_get: dict[str, Any] = {**scope, "method": "GET"}
        await self.app(as_get, receive, send_head)
