"""Clients that vanish mid-stream (10% of streams, HTTP and websocket): the worker drops the
job as soon as it sees the flag, and nothing is left held: no queue entry, no worker slot, no
API run."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from websockets.sync.client import connect

from app.api.state import AppState
from app.queue.wire import Chunk, Failed, is_terminal
from tests.support.ws import ws_job

from .reliability_kit import out_events, record, sentences, settled, wait_until

STREAMS = 20
LEAVERS = {3: "http", 13: "ws"}  # 10% of the streams leave after their first audio
CONCURRENCY = 5
# The worker polls flags every 0.1 s and the pipeline asks between decode steps: a drop
# should follow its flag by ~0.1 s plus one step. The bound is generous for 2 busy cores.
FLAG_TO_DROP_S = 1.0


def _stay(url: str, i: int) -> str:
    body = {"text": sentences(2, f"-{i}"), "seed": i, "format": "pcm", "stream": True}
    with httpx.Client(base_url=url, timeout=120) as http, http.stream("POST", "/synthesize", json=body) as r:
        data = b"".join(r.iter_bytes())
    return "done" if r.status_code == 200 and data else f"status {r.status_code}"


def _leave_http(url: str, i: int) -> tuple[str, float]:
    body = {"text": sentences(6, f"-{i}"), "seed": i, "format": "pcm", "stream": True}
    with httpx.Client(base_url=url, timeout=120) as http:
        with http.stream("POST", "/synthesize", json=body) as r:
            job_id = r.headers["x-bark-job-id"]
            next(r.iter_raw())  # first audio is here
        left = time.time()  # closing the response closed its connection (not reusable mid-body)
    return job_id, left


def _leave_ws(ws_url: str, i: int) -> tuple[str, float]:
    body = {"text": sentences(6, f"-{i}"), "seed": i}
    with connect(f"{ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps(body))
        job_id = None
        while True:
            message = ws.recv(timeout=60)
            if isinstance(message, bytes):
                break
            event = json.loads(message)
            job_id = event.get("job_id", job_id)
        ws.socket.shutdown(socket.SHUT_RDWR)  # vanish: no close handshake
        left = time.time()
    assert job_id is not None
    return job_id, left


def test_disconnects_free_every_slot(make_api, workers):
    api = make_api()
    keys, redis_ = workers.keys, workers.redis
    state: AppState = api.app.state.bark
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = {}
        for i in range(STREAMS):
            kind = LEAVERS.get(i)
            if kind == "http":
                futures[i] = pool.submit(_leave_http, api.url, i)
            elif kind == "ws":
                futures[i] = pool.submit(_leave_ws, api.ws_url, i)
            else:
                futures[i] = pool.submit(_stay, api.url, i)
        results = {i: f.result() for i, f in futures.items()}

    stayed = [results[i] for i in results if i not in LEAVERS]
    drops = []
    for i in LEAVERS:
        job_id, left = results[i]
        assert wait_until(lambda j=job_id: any(is_terminal(e) for _, e in out_events(redis_, keys, j)), 10)
        events = out_events(redis_, keys, job_id)
        ended_at, terminal = next((t, e) for t, e in events if isinstance(e, Failed))
        # The flag's set time, from its remaining TTL (set with ex = job_ttl_s + 3600).
        ttl_ms = redis_.pttl(keys.cancel(job_id))
        flagged_at = time.time() - (state.settings.job_ttl_s + 3600 - ttl_ms / 1000)
        chunks = [e.seq for _, e in events if isinstance(e, Chunk)]
        drops.append(
            {
                "via": LEAVERS[i],
                "terminal": terminal.type,
                "left_to_flag_s": round(flagged_at - left, 3),
                # the pipeline's first should_cancel() answered True: it stops there
                "flag_to_drop_s": round((terminal.dropped_at or 0) - flagged_at, 3),
                "flag_to_settled_s": round(ended_at - flagged_at, 3),
                "chunks_written": len(chunks),
                "n_chunks": getattr(events[-2][1], "n_chunks", None) if len(events) > 1 else None,
            }
        )

    def leaks() -> dict[str, int]:
        beats = workers.heartbeats()
        return {
            **settled(redis_, keys),
            "api_runs_open": state.drain.active,
            "worker_jobs_held": sum(len(h.get("jobs", [])) for h in beats),
            "workers_busy": sum(1 for h in beats if h.get("state") != "idle"),
        }

    wait_until(lambda: not any(leaks().values()), 10)
    leaked = leaks()
    record(
        "disconnects",
        streams=STREAMS,
        disconnected=len(LEAVERS),
        completed=sum(1 for s in stayed if s == "done"),
        drops=drops,
        leaked=leaked,
    )
    assert all(s == "done" for s in stayed)
    assert all(d["terminal"] == "cancelled" for d in drops), drops
    assert all(d["flag_to_drop_s"] < FLAG_TO_DROP_S for d in drops), drops
    assert not any(leaked.values()), leaked
    # The freed workers still serve.
    assert ws_job(api.ws_url, {"text": "Still here?", "seed": 1}).outcome == "done"
