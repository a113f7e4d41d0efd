"""A cancel reaches the worker: the job's own output stream in Redis ends `cancelled`, with
fewer chunks than the job had, and the worker that ran it is idle again at once.

The client's `cancelled` outcome comes from the API itself, so only what the worker wrote and
did can tell a worker that stopped from one that runs the job to its end for nobody.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from websockets.sync.client import connect

from app.queue.wire import Chunk, Event, Failed, Started, decode_event, is_terminal

# About 18 text chunks: a worker that ignored the cancel would stay busy for many chunk times.
LONG = " ".join(
    f"This is sentence number {i}, which is long enough to fill a chunk of text by itself." for i in range(36)
)
# What a worker that stopped may take to say so: one decode step (a fraction of a chunk's time)
# and a heartbeat write; the assertion allows one whole chunk's time on top of this.
IDLE_SLACK_S = 0.5


def _out(workers: Any, job_id: str) -> list[tuple[float, Event]]:
    """(epoch seconds of the entry, event) of the job's output stream."""
    entries: Any = workers.redis.xrange(workers.keys.out(job_id))
    return [(int(eid.split(b"-")[0]) / 1000, decode_event(fields)) for eid, fields in entries]


def _wait_terminal(workers: Any, job_id: str, timeout: float = 120) -> list[tuple[float, Event]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = _out(workers, job_id)
        if events and is_terminal(events[-1][1]):
            return events
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} has no terminal event after {timeout} s")


def _idle_within(workers: Any, worker_id: str, job_id: str, seconds: float) -> float | None:
    """Seconds until the worker's heartbeat is idle and holds no job; None if not by then."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        beat = next((h for h in workers.heartbeats() if h["id"] == worker_id), None)
        if beat is not None and beat["state"] == "idle" and job_id not in beat.get("jobs", ()):
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def _assert_stopped_at_the_worker(workers: Any, job_id: str) -> None:
    events = _wait_terminal(workers, job_id)
    started = next(e for _, e in events if isinstance(e, Started))
    chunk_times = [t for t, e in events if isinstance(e, Chunk)]
    chunks = [e for _, e in events if isinstance(e, Chunk)]
    terminal = events[-1][1]
    assert isinstance(terminal, Failed) and terminal.type == "cancelled", terminal
    assert chunks, "cancelled before its first audio: the test left too early"
    n_chunks = chunks[0].n_chunks
    assert len(chunks) < n_chunks, f"the worker wrote all {n_chunks} chunks"
    # One chunk's time, measured on this job: the worker's whole batch is this one job.
    chunk_s = (chunk_times[-1] - events[0][0]) / len(chunks)
    bound = chunk_s + IDLE_SLACK_S
    busy_if_ignored = (n_chunks - len(chunks)) * chunk_s
    assert busy_if_ignored > 2 * bound, "chunks too fast for the idle check to tell anything"
    took = _idle_within(workers, started.worker, job_id, bound)
    assert took is not None, f"worker {started.worker} still busy {bound:.2f} s after the cancel"


def _terminal_reply(ws: Any) -> dict[str, Any]:
    """The server's done or error event, past the frames and chunks already in flight."""
    while True:
        message = ws.recv(timeout=30)
        if isinstance(message, str) and (event := json.loads(message))["type"] in ("done", "error"):
            return event


def test_websocket_cancel_stops_the_job_at_the_worker(api, client, workers):
    with connect(f"{api.ws_url}/ws/synthesize", open_timeout=30) as ws:
        ws.send(json.dumps({"text": LONG, "seed": 1}))
        job_id = None
        while not isinstance(message := ws.recv(timeout=60), bytes):
            job_id = json.loads(message).get("job_id", job_id)
        ws.send(json.dumps({"type": "cancel"}))
        end = _terminal_reply(ws)  # the socket stays open: this is the cancel message's doing
    assert job_id is not None
    # the API's own answer, which a worker ignoring the flag does not change: not enough alone
    assert end["type"] == "error" and end["error"]["type"] == "cancelled", end
    _assert_stopped_at_the_worker(workers, job_id)


def test_http_disconnect_stops_the_job_at_the_worker(api, client, workers):
    body = {"text": LONG, "seed": 2, "format": "pcm", "stream": True}
    http = httpx.Client(base_url=api.url, timeout=60)
    with http, http.stream("POST", "/synthesize", json=body) as r:
        assert r.status_code == 200
        job_id = r.headers["x-bark-job-id"]
        next(r.iter_raw())  # the first audio is in: leave
    _assert_stopped_at_the_worker(workers, job_id)
