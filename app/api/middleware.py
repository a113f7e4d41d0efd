"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streams and hide aborts)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import PayloadTooLarge
from ..core.logs import request_id_var
from .errors import error_body, status_of
from .metrics import Metrics

log = logging.getLogger("bark.access")
_GOOD_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


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
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            seconds = time.perf_counter() - started
            if scope["type"] == "http":
                self.metrics.requests.labels(path, str(status or 500)).inc()
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

    def __init__(self, app: ASGIApp, default_limit: int, upload_limit: int) -> None:
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit

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
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._refuse(send, limit)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # then: http.disconnect, when the client goes

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        err = PayloadTooLarge(f"request body exceeds {limit} bytes")
        body = json.dumps(error_body(err)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status_of(err),
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
