"""uvicorn's h11 protocol with the limits uvicorn itself does not enforce.

What uvicorn 0.54 enforces (read from its source, protocols/http/h11_impl.py): with
`http="h11"` the request head is bounded by `h11_max_incomplete_event_size` (400 above; the
httptools parser has no bound at all, which is why we use h11), an idle keep-alive connection
is closed after `timeout_keep_alive`, and `limit_concurrency` answers 503 once that many
connections or tasks exist. What it does not: a connection that sends its head slowly (or
not at all) is kept forever (the keep-alive timer is cancelled by any byte), and connections
are accepted without limit. This subclass adds both: a deadline for every request head (from
the connection's start, and again after each response) and a cap on open connections.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class GuardedH11Protocol(H11Protocol):
    #: set by `guarded_protocol` below (uvicorn builds one instance per connection)
    header_timeout_s: float = 10.0
    max_connections: int = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            transport.abort()  # nothing read, nothing answered: the cheapest refusal
            return
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        if self.transport is None:  # refused in connection_made
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_deadline()  # a whole head arrived (the body has its own limit)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A protocol class carrying these limits (uvicorn takes a class, not an instance)."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )


class DenialAwareWSProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, minus one false ERROR: after a handshake refused with an
    HTTP response (our 401/403 body) it still logs "ASGI callable returned without completing
    handshake" for every refusal. The refusal is logged once, at INFO, by the route."""

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True
