"""Websocket clients of the tests: one that reads an open job to its end, one that records a whole
job's outcome (events, frames, close code) without raising."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def read_until_done(ws: Any, timeout: float = 90) -> tuple[list[dict[str, Any]], bytes]:
    """A websocket job's JSON events and its PCM, read until `done` (an `error` fails)."""
    events: list[dict[str, Any]] = []
    pcm = b""
    while True:
        message = ws.recv(timeout=timeout)
        if isinstance(message, bytes):
            pcm += message
            continue
        events.append(json.loads(message))
        if events[-1]["type"] in ("done", "error"):
            assert events[-1]["type"] == "done", events[-1]
            return events, pcm


@dataclass
class WsResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    frames: dict[int, bytes] = field(default_factory=dict)
    duplicates: int = 0  # chunk seqs received more than once
    close_code: int | None = None
    job_id: str | None = None
    queued_at: float | None = None  # when the server acknowledged the job (monotonic)
    ended_at: float | None = None

    @property
    def outcome(self) -> str:
        last = self.events[-1]["type"] if self.events else None
        if last == "done":
            return "done"
        if last == "error":
            return f"error {self.events[-1]['error']['code']}"
        return f"closed {self.close_code}"

    @property
    def pcm(self) -> bytes:
        return b"".join(self.frames[s] for s in sorted(self.frames))

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events if e["type"] == "chunk"]


def ws_job(ws_url: str, body: dict[str, Any], timeout: float = 120.0) -> WsResult:
    """One synthesis over the websocket, recording every event and frame; never raises on a
    server-side close (that is an outcome to check)."""
    result = WsResult()
    deadline = time.monotonic() + timeout
    seq: int | None = None
    try:
        with connect(f"{ws_url}/ws/synthesize", open_timeout=30) as ws:
            ws.send(json.dumps(body))
            while time.monotonic() < deadline:
                message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                if isinstance(message, bytes):
                    assert seq is not None, "binary frame before its chunk event"
                    if seq in result.frames:
                        result.duplicates += 1
                    result.frames[seq] = message
                    continue
                event = json.loads(message)
                result.events.append(event)
                if event["type"] == "queued":
                    result.job_id = event["job_id"]
                    result.queued_at = time.monotonic()
                elif event["type"] == "chunk":
                    seq = event["seq"]
                elif event["type"] in ("done", "error"):
                    break
            ws.recv(timeout=5)  # the server's close follows its terminal event
    except ConnectionClosed as exc:
        result.close_code = exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        result.close_code = -1  # ours: the server never ended it
    result.ended_at = time.monotonic()
    return result
