"""Graceful shutdown of the API: stop taking syntheses, let those in flight finish, then stop.

uvicorn's own shutdown closes the listener and cuts websockets at once (close 1012), so a
websocket synthesis would be lost. Instead, the first SIGTERM only starts a drain: /readyz
and new syntheses answer 503 (a load balancer moves on, clients retry elsewhere) while the
jobs in flight, over HTTP or websocket, run to their end. The server stops when none is
left or the drain's deadline passes.
"""

from __future__ import annotations

import time


class Drain:
    def __init__(self) -> None:
        self.active = 0  # JobRuns open now (each enter() is matched by one leave())
        self.deadline: float | None = None  # monotonic; set once draining

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def begin(self, timeout_s: float) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + timeout_s

    def enter(self) -> None:
        self.active += 1

    def leave(self) -> None:
        self.active -= 1

    def finished(self) -> bool:
        """Draining, and nothing left in flight (or out of time)."""
        if self.deadline is None:
            return False
        return self.active <= 0 or time.monotonic() >= self.deadline
