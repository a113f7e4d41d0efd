"""Failure handling with real processes: a worker SIGKILLed mid-job, an abort after headers,
a job that keeps killing workers."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest
from websockets.sync.client import connect

from app.queue.connection import sync_client
from app.queue.consumer import Consumer
from app.queue.keys import Keys
from app.queue.wire import Chunk, Failed, Started
from app.worker.background import ActiveJobs, Heartbeat
from app.worker.loop import Worker
from tests.support.servers import register_worker

TEXT = " ".join(
    f"This is sentence number {i}, which is long enough to fill a chunk of text by itself." for i in range(12)
)  # about six text chunks


def test_sigkilled_worker_job_completes_elsewhere(api, client, workers):
    body = {"text": TEXT, "seed": 42}
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps(body))
        events, frames = [], {}
        victim = None
        last_seq = None
        while True:
            message = ws.recv(timeout=90)
            if isinstance(message, bytes):
                assert last_seq not in frames, f"chunk {last_seq} forwarded twice"
                frames[last_seq] = message
                if victim is None:
                    # first audio is out: kill the worker generating this job, mid-job
                    worker_id = next(e for e in events if e["type"] == "started")["worker"]
                    victim = next(h["pid"] for h in workers.heartbeats() if h["id"] == worker_id)
                    workers.kill(victim)
                continue
            event = json.loads(message)
            events.append(event)
            if event["type"] == "chunk":
                last_seq = event["seq"]
            if event["type"] in ("done", "error"):
                break
    assert events[-1]["type"] == "done", events[-1]
    chunks = [e["seq"] for e in events if e["type"] == "chunk"]
    assert chunks == list(range(len(chunks))) and len(chunks) >= 3  # each seq exactly once
    assert [e["type"] for e in events].count("started") == 1
    # complete audio: identical to a clean run with the same seed
    reference = client.post("/synthesize", json={**body, "format": "pcm"}, timeout=120)
    assert reference.status_code == 200
    assert b"".join(frames[s] for s in chunks) == reference.content
    assert victim not in {p.pid for p in workers.alive()}


def _scripted_worker(redis_url: str, prefix: str, script) -> threading.Thread:
    """A stand-in worker on the real queue: takes one job and writes the given events."""
    consumer = Consumer(
        sync_client(redis_url, 2.0),
        Keys(prefix),
        "scripted",
        claim_idle_ms=60_000,
        job_ttl_s=60,
        stream_ttl_s=60,
    )
    consumer.ensure_group()

    def run() -> None:
        deliveries = []
        while not deliveries:
            deliveries = consumer.read(1, 200)
        script(consumer, deliveries[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_failure_after_headers_aborts_the_transfer(make_api, redis_url):
    prefix = f"abort{uuid.uuid4().hex[:6]}"
    register_worker(redis_url, prefix, "scripted")
    server = make_api(prefix)

    def script(consumer: Consumer, delivery) -> None:
        job_id = delivery.job.id
        consumer.emit(job_id, Started())
        consumer.emit(job_id, Chunk(0, pcm=b"\x00\x01" * 2400))
        time.sleep(0.3)
        consumer.finish(delivery, Failed("generation_failed", "boom"))

    thread = _scripted_worker(redis_url, prefix, script)
    received = b""
    body = {"text": "x", "stream": True}
    with (
        httpx.Client(base_url=server.url, timeout=20) as c,
        c.stream("POST", "/synthesize", json=body) as r,
    ):
        assert r.status_code == 200  # headers went out with the first audio
        with pytest.raises(httpx.RemoteProtocolError):
            for piece in r.iter_bytes():
                received += piece
    thread.join(5)
    assert received[:4] == b"RIFF" and len(received) == 44 + 4800  # header + chunk 0, no end


def test_failure_before_audio_gets_a_status(make_api, redis_url):
    prefix = f"early{uuid.uuid4().hex[:6]}"
    register_worker(redis_url, prefix, "scripted")
    server = make_api(prefix)

    def script(consumer: Consumer, delivery) -> None:
        consumer.finish(delivery, Failed("generation_failed", "model broke"))

    _scripted_worker(redis_url, prefix, script)
    with httpx.Client(base_url=server.url, timeout=20) as c:
        r = c.post("/synthesize", json={"text": "x", "stream": True})
    assert r.status_code == 500
    assert r.json()["error"] == {
        "message": "model broke",
        "type": "generation_failed",
        "param": None,
        "code": 500,
    }


def test_poison_job_is_dead_lettered(redis_url, make_api):
    """A worker handed a job for the (max+1)th time parks it and tells the client."""
    prefix = f"dead{uuid.uuid4().hex[:6]}"
    register_worker(redis_url, prefix, "scripted")
    server = make_api(prefix)
    keys = Keys(prefix)
    client = sync_client(redis_url, 2.0)
    crashy = Consumer(client, keys, "crashy", claim_idle_ms=100, job_ttl_s=60, stream_ttl_s=60)
    crashy.ensure_group()
    worker = Worker(
        crashy,
        runner=None,
        heartbeat=Heartbeat(client, keys, "crashy", 5),  # type: ignore[arg-type]
        active=ActiveJobs(),
        batch_size=1,
        max_deliveries=2,
        heartbeat_interval_s=1,
        claim_idle_s=5,
    )
    result: dict = {}

    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=20) as c:
            result["r"] = c.post("/synthesize", json={"text": "poison"})

    caller = threading.Thread(target=call)
    caller.start()
    deliveries = []
    while not deliveries:
        deliveries = crashy.read(1, 200)  # delivery 1: this "worker" dies
    for _ in range(2):  # deliveries 2 and 3, each to a "new" worker after the idle bound
        time.sleep(0.15)
        deliveries = crashy.reclaim(1)
    assert deliveries[0].deliveries == 3
    assert worker._admit(deliveries) == []
    caller.join(20)
    r = result["r"]
    assert r.status_code == 500 and "3 times" in r.json()["error"]["message"]
    assert client.xlen(keys.dead) == 1 and client.xlen(keys.jobs) == 0
