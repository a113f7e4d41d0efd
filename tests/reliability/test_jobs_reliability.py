"""Jobs that outlive a connection (issue 17) under failure: a worker SIGKILLed in the middle of
an async job, retried submissions, a key that floods the queue. Figures go to RELIABILITY.md."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from websockets.sync.client import connect

from tests.support.ws import read_until_done

from .conftest import SHARED_PREFIX
from .reliability_kit import new_prefix, out_events, record, sentences, wait_until

KEY_A, KEY_B = "flood-key-a-0123456789", "quiet-key-b-0123456789"


def _status(c: httpx.Client, job_id: str, **kw: object) -> dict:
    r = c.get(f"/jobs/{job_id}", **kw)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return r.json()


def _follow(ws_url: str, job_id: str) -> tuple[list[int], bytes]:
    """A websocket client following the job from its first chunk to its end: the chunk seqs
    it received and the audio joined."""
    with connect(f"{ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"type": "resume", "job_id": job_id, "last_seq": -1}))
        events, pcm = read_until_done(ws, timeout=120)
    return [e["seq"] for e in events if e["type"] == "chunk"], pcm


def _chunk_seqs_by_attempt(pool, job_id: str) -> list[list[int]]:  # type: ignore[no-untyped-def]
    from app.queue.wire import Chunk, Started

    attempts: list[list[int]] = []
    for _, event in out_events(pool.redis, pool.keys, job_id):
        if isinstance(event, Started):
            attempts.append([])
        elif isinstance(event, Chunk):
            attempts[-1].append(event.seq)
    return attempts


def test_async_job_survives_a_worker_sigkill(make_api, make_workers):
    prefix = new_prefix("jobkill")
    pool = make_workers(prefix, 2)
    api = make_api(prefix)
    body = {"text": sentences(8), "seed": 77}
    with httpx.Client(base_url=api.url, timeout=120) as c, ThreadPoolExecutor(1) as follower:
        job_id = c.post("/jobs", json=body).json()["id"]
        followed = follower.submit(_follow, api.ws_url, job_id)
        assert wait_until(lambda: _status(c, job_id)["chunks_done"] >= 2, 60)
        beats = {h["id"]: h["pid"] for h in pool.heartbeats()}
        worker = pool.redis.hget(f"{prefix}:job:{job_id}:meta", "worker").decode()
        pool.kill(beats[worker])
        assert wait_until(lambda: _status(c, job_id)["status"] in ("done", "failed", "cancelled"), 120)
        final = _status(c, job_id)
        ws_seqs, ws_audio = followed.result(timeout=120)
        audio = c.get(f"/jobs/{job_id}/audio", params={"format": "pcm"}).content
        reference = c.post("/synthesize", json={**body, "format": "pcm"}).content
    attempts = _chunk_seqs_by_attempt(pool, job_id)
    n = final["n_chunks"]
    record(
        "jobs_sigkill",
        n_chunks=n,
        written_at_kill=len(attempts[0]),
        chunks_generated=sum(len(a) for a in attempts),
        generated_by_reclaimer=len(attempts[-1]),
        attempts=final["attempt"],
        status=final["status"],
        victim=worker,
    )
    assert final["status"] == "done" and final["attempt"] == 2 and len(attempts) == 2
    killed_at = len(attempts[0])
    assert 2 <= killed_at < n and attempts[0] == list(range(killed_at))
    # resume, not redo: the reclaiming worker generated only the chunks not yet written
    assert attempts[1] == list(range(killed_at, n))
    assert ws_seqs == list(range(n))  # the client following the job got each chunk once
    assert audio == reference and ws_audio == reference  # whole and exact across the kill


def test_retried_submissions_create_no_duplicates(make_api, workers):
    api = make_api(SHARED_PREFIX)
    keys = [f"retry-{time.time()}-{i}" for i in range(10)]
    before = sum(1 for _ in workers.redis.scan_iter(match=f"{SHARED_PREFIX}:job:*:meta", count=1000))
    with httpx.Client(base_url=api.url, timeout=60) as c, ThreadPoolExecutor(20) as pool:
        # each logical request is sent 5 times at once (a client retrying after timeouts)
        sends = [(k, i) for k in keys for i in range(5)]
        replies = list(
            pool.map(
                lambda s: c.post("/jobs", json={"text": f"Job {s[0]}."}, headers={"Idempotency-Key": s[0]}),
                sends,
            )
        )
    after = sum(1 for _ in workers.redis.scan_iter(match=f"{SHARED_PREFIX}:job:*:meta", count=1000))
    ids = {r.json()["id"] for r in replies if r.status_code == 202}
    record("jobs_idempotency", submissions=len(sends), jobs_created=after - before, distinct_ids=len(ids))
    assert all(r.status_code == 202 for r in replies)
    assert len(ids) == len(keys) and after - before == len(keys)  # duplicates created: 0


def test_flood_by_one_key_leaves_room_for_another(make_api, workers):
    api = make_api(SHARED_PREFIX, api_keys=[KEY_A, KEY_B], jobs_per_key=3, queue_max=64)
    a = {"Authorization": f"Bearer {KEY_A}"}
    b = {"Authorization": f"Bearer {KEY_B}"}
    with httpx.Client(base_url=api.url, timeout=60) as c:
        flood = [c.post("/jobs", json={"text": sentences(2, f"-{i}")}, headers=a) for i in range(20)]
        quiet = [c.post("/jobs", json={"text": f"Quiet job {i}."}, headers=b) for i in range(3)]
        a_ids = [r.json()["id"] for r in flood if r.status_code == 202]
        b_ids = [r.json()["id"] for r in quiet if r.status_code == 202]
        assert wait_until(lambda: all(_status(c, j, headers=a)["status"] == "done" for j in a_ids), 120)
        assert wait_until(lambda: all(_status(c, j, headers=b)["status"] == "done" for j in b_ids), 120)
        a_end = max(_status(c, j, headers=a)["finished_at"] for j in a_ids)
        b_starts = [_status(c, j, headers=b)["started_at"] for j in b_ids]
    statuses_a = [r.status_code for r in flood]
    record(
        "jobs_flood",
        key_a={"admitted": statuses_a.count(202), "429": statuses_a.count(429)},
        key_b={"admitted": len(b_ids), "refused": len(quiet) - len(b_ids)},
        b_started_before_a_drained=sum(1 for s in b_starts if s < a_end),
        key_ids=[hashlib.sha256(k.encode()).hexdigest()[:12] for k in (KEY_A, KEY_B)],
    )
    assert statuses_a.count(202) == 3 and statuses_a.count(429) == 17
    assert all(r.headers.get("retry-after") for r in flood if r.status_code == 429)
    assert len(b_ids) == 3
    assert all(s < a_end for s in b_starts)


def _drop_then_resume(ws_url: str, body: dict) -> tuple[bytes, list[int]]:
    """A client that loses its socket after the first chunk and resumes on a new one."""
    with connect(f"{ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps(body))
        job_id = json.loads(ws.recv(timeout=60))["job_id"]
        first = ws.recv(timeout=60)
        while not isinstance(first, bytes):
            first = ws.recv(timeout=60)
    with connect(f"{ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"type": "resume", "job_id": job_id, "last_seq": 0}))
        events, rest = read_until_done(ws)
    return first + rest, [0] + [e["seq"] for e in events if e["type"] == "chunk"]


def test_dropped_clients_resume_whole(make_api, workers):
    api = make_api(SHARED_PREFIX, resume_grace_s=20)
    bodies = [{"text": sentences(3, f"-r{i}"), "seed": 500 + i} for i in range(6)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        resumed = list(pool.map(lambda b: _drop_then_resume(api.ws_url, b), bodies))
    with httpx.Client(base_url=api.url, timeout=60) as c:
        references = [c.post("/synthesize", json={**b, "format": "pcm"}).content for b in bodies]
    exact = sum(1 for (pcm, _), ref in zip(resumed, references, strict=True) if pcm == ref)
    seqs = [s for _, s in resumed]
    duplicates = sum(len(s) - len(set(s)) for s in seqs)
    missing = sum(len(set(range(max(s) + 1)) - set(s)) for s in seqs)
    record("jobs_resume", jobs=len(bodies), resumed_exact=exact, duplicate_chunks=duplicates, missing=missing)
    assert exact == len(bodies) and duplicates == 0 and missing == 0
