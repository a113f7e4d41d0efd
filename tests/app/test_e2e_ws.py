"""WS /ws/synthesize with the `websockets` client: events, PCM frames, cancel, limits."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

LONG = " ".join(
    f"This is sentence number {i}, which is long enough to fill a chunk of text by itself." for i in range(40)
)  # about twenty text chunks: seconds of work even on the tiny checkpoint


def events_of(ws, limit: float = 60):
    """(json events, {seq: pcm}) until the server closes."""
    events, frames = [], {}
    deadline = time.monotonic() + limit
    last_seq = None
    try:
        while time.monotonic() < deadline:
            message = ws.recv(timeout=limit)
            if isinstance(message, bytes):
                assert last_seq is not None and last_seq not in frames
                frames[last_seq] = message
            else:
                event = json.loads(message)
                events.append(event)
                if event["type"] == "chunk":
                    last_seq = event["seq"]
    except ConnectionClosed:
        pass
    return events, frames


def test_events_and_frames(api, client):
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"text": "Hello. " * 40, "seed": 9}))
        events, frames = events_of(ws)
        assert ws.close_code == 1000
    types = [e["type"] for e in events]
    assert types[0] == "queued" and types[1] == "started" and types[-1] == "done"
    queued, done = events[0], events[-1]
    assert queued["seed"] == 9 and queued["position"] >= 0 and queued["job_id"]
    chunks = [e for e in events if e["type"] == "chunk"]
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert all(c["samples"] * 2 == len(frames[c["seq"]]) for c in chunks)
    assert done["samples"] == sum(c["samples"] for c in chunks)
    assert done["duration_s"] == pytest.approx(done["samples"] / 24000, abs=1e-3)
    assert done["rtf"] > 0 and done["chunks"] == len(chunks)
    # the same seed over HTTP gives the same bytes
    pcm = client.post("/synthesize", json={"text": "Hello. " * 40, "seed": 9, "format": "pcm"})
    assert pcm.content == b"".join(frames[s] for s in sorted(frames))


def test_cancel_frees_the_worker(api, client, workers):
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"text": LONG, "seed": 1}))
        started = None
        while True:
            event = ws.recv(timeout=60)
            if isinstance(event, str) and json.loads(event)["type"] == "started":
                started = time.monotonic()
            if isinstance(event, bytes):  # the first chunk's audio
                break
        ws.send(json.dumps({"type": "cancel"}))
        cancelled_at = time.monotonic()
        events, _ = events_of(ws, limit=15)
        assert events[-1]["type"] == "error"
        assert events[-1]["error"]["type"] == "cancelled"
        assert events[-1]["error"]["message"] == "cancelled by the client"  # not "went away"
        assert ws.close_code == 4499
    assert started is not None
    # the worker drops the job within a decode step: idle long before the job could end
    workers.wait_idle(timeout=5)
    freed_after = time.monotonic() - cancelled_at
    assert freed_after < 5
    r = client.post("/synthesize", json={"text": "Next job.", "format": "pcm"})
    assert r.status_code == 200


def test_disconnect_cancels_the_job(api, client, workers):
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"text": LONG}))
        while not isinstance(ws.recv(timeout=60), bytes):
            pass
    # closed mid-job: the API raises the cancel flag, the worker drops the job
    workers.wait_idle(timeout=5)


def test_invalid_first_message(api, client):
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"text": "", "seed": 1}))
        events, _ = events_of(ws, limit=10)
        assert events[0]["type"] == "error" and events[0]["error"]["param"] == "text"
        assert events[0]["error"]["code"] == 422
        assert ws.close_code == 4422
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"text": "hi", "voice": "nobody"}))
        events, _ = events_of(ws, limit=10)
        assert events[0]["error"]["type"] == "unknown_voice" and ws.close_code == 4404


def test_oversize_message_closes_1009(api, client):
    with connect(f"{api.ws_url}/ws/synthesize", max_size=None) as ws:
        ws.send(json.dumps({"text": "x" * (100 * 1024)}))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_origin_allow_list_and_keys(make_api, redis_url):
    server = make_api(f"wsk{uuid.uuid4().hex[:6]}", api_keys=["sekrit"], ws_origins=["https://good.example"])
    url = f"{server.ws_url}/ws/synthesize"
    with pytest.raises(InvalidStatus) as info:
        connect(url, origin="https://evil.example", additional_headers={"x-api-key": "sekrit"})
    assert info.value.response.status_code == 403
    assert json.loads(info.value.response.body)["error"]["type"] == "permission_error"
    with pytest.raises(InvalidStatus) as info:
        connect(url, origin="https://good.example")
    assert info.value.response.status_code == 401
    # key in the query (browsers cannot set headers): accepted; no worker on this prefix -> 503
    with connect(f"{url}?api_key=sekrit", origin="https://good.example") as ws:
        ws.send(json.dumps({"text": "hi"}))
        events, _ = events_of(ws, limit=10)
    assert events[0]["error"]["code"] == 503 and ws.close_code == 4503
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/healthz").status_code == 200
