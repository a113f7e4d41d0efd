"""Jobs that outlive a connection (issue 17), end to end: uvicorn, Redis, two worker processes.

Every job's record is read back from Redis or over HTTP; audio is parsed and compared byte
for byte with an uninterrupted run of the same seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
import httpx
import soundfile as sf
from websockets.sync.client import connect

from bark_core.planner import plan_chunks
from tests.app.conftest import E2E_PREFIX
from tests.support.ws import read_until_done

SHORT = "Hello there, this is a job."
LONG = " ".join(
    f"This is sentence number {i}, which is long enough to fill a chunk of text by itself." for i in range(3)
)
N_LONG = len(plan_chunks(LONG))  # the workers plan with the same defaults
VERY_LONG = LONG * 8  # ~24 chunks: many seconds of work
KEY_A, KEY_B = "key-a-0123456789abcdef", "key-b-0123456789abcdef"


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def wait_status(c: httpx.Client, job_id: str, want: set[str], timeout: float = 60, **kw: Any) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = c.get(f"/jobs/{job_id}", **kw)
        assert r.status_code == 200, r.text
        if r.json()["status"] in want:
            return r.json()
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {want}: {r.json()}")


def wait_first_chunk(c: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = c.get(f"/jobs/{job_id}").json()
        if status["chunks_done"] >= 1:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} wrote no chunk")


def records(workers) -> int:
    """How many job records (one per job ever queued, for their lifetime) the prefix holds."""
    return sum(1 for _ in workers.redis.scan_iter(match=f"{E2E_PREFIX}:job:*:meta", count=1000))


# --- 1. asynchronous jobs -----------------------------------------------------------------


def test_post_then_poll_reaches_done_and_audio_decodes_in_each_format(client):
    r = client.post("/jobs", json={"text": LONG, "seed": 21})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/jobs/{job['id']}" and r.headers["x-bark-job-id"] == job["id"]
    assert job["status"] in ("queued", "running") and job["position"] >= 0
    done = wait_status(client, job["id"], {"done", "failed", "cancelled"})
    assert done["status"] == "done", done
    assert N_LONG >= 3
    assert done["chunks_done"] == done["n_chunks"] == N_LONG and len(done["chunk_samples"]) == N_LONG
    assert done["started_at"] >= done["created_at"] and done["finished_at"] >= done["started_at"]
    assert done["error"] is None and done["expires_at"] > done["finished_at"]
    # the job's audio is the audio of the same request made synchronously
    same = client.post("/synthesize", json={"text": LONG, "seed": 21, "format": "pcm"}).content
    pcm = client.get(f"/jobs/{job['id']}/audio", params={"format": "pcm"})
    assert pcm.status_code == 200 and pcm.content == same
    assert len(same) == 2 * sum(done["chunk_samples"])
    for fmt in ("wav", "flac", "ogg", "mp3", "opus"):
        r = client.get(f"/jobs/{job['id']}/audio", params={"format": fmt})
        assert r.status_code == 200, (fmt, r.text)
        assert int(r.headers["content-length"]) == len(r.content)
        audio, sr = sf.read(io.BytesIO(r.content))
        assert sr == 24000 and len(audio) > 0, fmt
    wav, _ = sf.read(io.BytesIO(client.get(f"/jobs/{job['id']}/audio").content), dtype="int16")
    assert wav.tobytes() == same
    aac = client.get(f"/jobs/{job['id']}/audio", params={"format": "aac"})
    with av.open(io.BytesIO(aac.content)) as c:
        assert sum(f.samples for f in c.decode(audio=0)) > 0
    # from_chunk skips exactly the first chunks
    tail = client.get(f"/jobs/{job['id']}/audio", params={"format": "pcm", "from_chunk": 1}).content
    assert tail == same[2 * done["chunk_samples"][0] :]


def test_audio_streams_while_the_job_runs(client):
    job = client.post("/jobs", json={"text": VERY_LONG, "seed": 4}).json()
    with client.stream("GET", f"/jobs/{job['id']}/audio", params={"format": "wav"}) as r:
        assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
        status = client.get(f"/jobs/{job['id']}").json()["status"]
        blob = b"".join(r.iter_bytes())
    assert status == "running"  # the first audio came before the job ended
    assert blob[:4] == b"RIFF" and blob[4:8] == b"\xff\xff\xff\xff"
    whole = client.get(f"/jobs/{job['id']}/audio", params={"format": "pcm"}).content
    assert blob[44:] == whole


def test_delete_cancels_and_frees_the_worker(client, workers):
    job = client.post("/jobs", json={"text": VERY_LONG}).json()
    assert wait_first_chunk(client, job["id"])["status"] == "running"
    r = client.delete(f"/jobs/{job['id']}")
    assert r.status_code == 202
    cancelled = wait_status(client, job["id"], {"cancelled", "done", "failed"}, timeout=10)
    assert cancelled["status"] == "cancelled" and cancelled["error"]["type"] == "cancelled"
    assert cancelled["chunks_done"] < cancelled["n_chunks"]
    workers.wait_idle(timeout=5)
    r = client.get(f"/jobs/{job['id']}/audio")
    assert r.status_code == 409 and "cancelled" in r.json()["error"]["message"]


def test_unknown_job_is_404(client):
    for path in ("/jobs/0123456789abcdef0123456789abcdef", "/jobs/nope", "/jobs/nope/audio"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"]["param"] == "job_id", path
    assert client.delete("/jobs/0123456789abcdef0123456789abcdef").status_code == 404


def test_only_the_key_that_created_a_job_sees_it(make_api, workers):
    api = make_api(E2E_PREFIX, api_keys=[KEY_A, KEY_B])
    a = {"Authorization": f"Bearer {KEY_A}"}
    b = {"Authorization": f"Bearer {KEY_B}"}
    with httpx.Client(base_url=api.url, timeout=60) as c:
        job = c.post("/jobs", json={"text": SHORT, "seed": 1}, headers=a).json()
        wait_status(c, job["id"], {"done"}, headers=a)
        assert c.get(f"/jobs/{job['id']}/audio", headers=a).status_code == 200
        for method, path in (("GET", ""), ("GET", "/audio"), ("DELETE", "")):
            r = c.request(method, f"/jobs/{job['id']}{path}", headers=b)
            assert r.status_code == 404, (method, path, r.text)
        assert c.get(f"/jobs/{job['id']}").status_code == 401
    # the record holds the key's id, never the key
    raw = workers.redis.hgetall(f"{E2E_PREFIX}:job:{job['id']}:meta")
    assert raw[b"owner"] == key_id(KEY_A).encode()
    assert not any(KEY_A.encode() in v for v in raw.values())


def test_results_expire_after_the_ttl(make_api, workers):
    api = make_api(E2E_PREFIX, job_ttl_s=1)
    with httpx.Client(base_url=api.url, timeout=60) as c:
        job = c.post("/jobs", json={"text": SHORT, "seed": 2}).json()
        wait_status(c, job["id"], {"done"})
        assert c.get(f"/jobs/{job['id']}/audio").status_code == 200
        time.sleep(1.6)
        for path in ("", "/audio"):
            r = c.get(f"/jobs/{job['id']}{path}")
            assert r.status_code == 404 and "expired" in r.json()["error"]["message"], r.text
    assert not workers.redis.exists(f"{E2E_PREFIX}:job:{job['id']}:out")


# --- 2. resumable streams ------------------------------------------------------------------


def test_dropped_http_stream_resumes_from_chunk(make_api, client):
    api = make_api(E2E_PREFIX, resume_grace_s=15)
    body = {"text": LONG, "seed": 33, "format": "pcm"}
    with httpx.Client(base_url=api.url, timeout=60) as c:
        with c.stream("POST", "/synthesize", json={**body, "stream": True}) as r:
            job_id = r.headers["x-bark-job-id"]
            got = next(r.iter_raw())  # then the client drops the connection
        status = wait_status(c, job_id, {"done", "failed", "cancelled"})
        assert status["status"] == "done"  # the drop did not cancel it
        ends = [2 * sum(status["chunk_samples"][:k]) for k in range(len(status["chunk_samples"]) + 1)]
        have = max(k for k, end in enumerate(ends) if end <= len(got))
        rest = c.get(f"/jobs/{job_id}/audio", params={"format": "pcm", "from_chunk": have})
        assert rest.status_code == 200
    joined = got[: ends[have]] + rest.content
    assert joined == client.post("/synthesize", json=body).content  # no chunk twice, none missing


def test_dropped_websocket_resumes_with_last_seq(make_api, client):
    api = make_api(E2E_PREFIX, resume_grace_s=15)
    body = {"text": LONG, "seed": 34}
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps(body))
        queued = json.loads(ws.recv(timeout=30))
        first = ws.recv(timeout=60)
        while not isinstance(first, bytes):
            first = ws.recv(timeout=60)
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"type": "resume", "job_id": queued["job_id"], "last_seq": 0}))
        events, rest = read_until_done(ws)
    seqs = [e["seq"] for e in events if e["type"] == "chunk"]
    assert seqs == [1, 2]
    whole = client.post("/synthesize", json={**body, "format": "pcm"}).content
    assert first + rest == whole


def test_grace_period_ends_in_cancel_and_frees_the_worker(make_api, workers):
    api = make_api(E2E_PREFIX, resume_grace_s=1.5)
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"text": VERY_LONG}))
        job_id = json.loads(ws.recv(timeout=30))["job_id"]
        while not isinstance(ws.recv(timeout=60), bytes):
            pass
    left = time.monotonic()
    with httpx.Client(base_url=api.url, timeout=10) as c:
        time.sleep(0.5)
        assert c.get(f"/jobs/{job_id}").json()["status"] == "running"  # within the grace period
        status = wait_status(c, job_id, {"cancelled", "done", "failed"}, timeout=10)
    assert status["status"] == "cancelled" and status["chunks_done"] < status["n_chunks"]
    assert time.monotonic() - left >= 1.5
    workers.wait_idle(timeout=5)


def test_explicit_ws_cancel_is_immediate_even_with_a_grace_period(make_api, workers):
    api = make_api(E2E_PREFIX, resume_grace_s=30)
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"text": VERY_LONG}))
        job_id = json.loads(ws.recv(timeout=30))["job_id"]
        while not isinstance(ws.recv(timeout=60), bytes):
            pass
        ws.send(json.dumps({"type": "cancel"}))
        cancelled_at = time.monotonic()
        with httpx.Client(base_url=api.url, timeout=10) as c:
            status = wait_status(c, job_id, {"cancelled", "done", "failed"}, timeout=10)
    assert status["status"] == "cancelled"
    workers.wait_idle(timeout=5)
    assert time.monotonic() - cancelled_at < 5


# --- 3. idempotent submission ------------------------------------------------------------


def test_idempotent_retry_is_the_same_job_and_audio(client, workers):
    before = records(workers)
    headers = {"Idempotency-Key": "retry-1-" + str(time.time())}
    body = {"text": SHORT, "format": "pcm"}  # no seed: only one job can give the same audio
    first = client.post("/synthesize", json=body, headers=headers)
    again = client.post("/synthesize", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.headers["x-bark-job-id"] == again.headers["x-bark-job-id"]
    assert first.headers["x-bark-seed"] == again.headers["x-bark-seed"]
    assert first.content == again.content and len(first.content) > 0
    assert records(workers) == before + 1
    other = client.post("/synthesize", json={**body, "text": "Something else."}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["param"] == "Idempotency-Key"
    assert "different request body" in other.json()["error"]["message"]
    assert records(workers) == before + 1


def test_concurrent_duplicates_make_one_job(client, workers):
    before = records(workers)
    headers = {"Idempotency-Key": "burst-" + str(time.time())}
    with ThreadPoolExecutor(10) as pool:
        replies = list(
            pool.map(lambda _: client.post("/jobs", json={"text": SHORT}, headers=headers), range(10))
        )
    assert all(r.status_code == 202 for r in replies), [r.text for r in replies]
    assert len({r.json()["id"] for r in replies}) == 1
    assert records(workers) == before + 1


def test_openai_speech_honours_idempotency_key(client, workers):
    before = records(workers)
    headers = {"Idempotency-Key": "speech-" + str(time.time())}
    body = {"model": "tts-1", "input": SHORT, "voice": "alloy", "response_format": "pcm"}
    a = client.post("/v1/audio/speech", json=body, headers=headers)
    b = client.post("/v1/audio/speech", json=body, headers=headers)
    assert a.status_code == b.status_code == 200, a.text
    assert a.headers["x-bark-job-id"] == b.headers["x-bark-job-id"] and a.content == b.content
    assert records(workers) == before + 1


# --- 4. a fair share per key -------------------------------------------------------------


def test_a_flooding_key_gets_429_while_others_are_admitted(make_api, workers):
    api = make_api(E2E_PREFIX, api_keys=[KEY_A, KEY_B], jobs_per_key=2)
    a = {"Authorization": f"Bearer {KEY_A}"}
    b = {"Authorization": f"Bearer {KEY_B}"}
    with httpx.Client(base_url=api.url, timeout=60) as c:
        flood = [c.post("/jobs", json={"text": LONG * 2}, headers=a) for _ in range(5)]
        assert [r.status_code for r in flood] == [202, 202, 429, 429, 429]
        assert int(flood[2].headers["retry-after"]) > 0 and "limit" in flood[2].json()["error"]["message"]
        mine = c.post("/jobs", json={"text": SHORT}, headers=b)
        assert mine.status_code == 202
        done_b = wait_status(c, mine.json()["id"], {"done"}, headers=b)
        done_a = [wait_status(c, r.json()["id"], {"done"}, headers=a) for r in flood[:2]]
        assert done_b["started_at"] < max(d["finished_at"] for d in done_a)
        # A's jobs ended: A is admitted again
        assert c.post("/jobs", json={"text": SHORT}, headers=a).status_code == 202
        metrics = c.get("/metrics", headers=a).text
    assert f'bark_key_jobs_total{{key="{key_id(KEY_A)}",outcome="rejected_queue_full"}} 3.0' in metrics
    assert f'bark_key_jobs_total{{key="{key_id(KEY_B)}",outcome="admitted"}} 1.0' in metrics
    assert KEY_A not in metrics and KEY_B not in metrics


# --- 6. resume, not redo: what is kept for it ----------------------------------------------


def test_each_chunks_generation_is_kept_beside_the_output(client, workers):
    import numpy as np

    from app.queue.wire import TOKEN_DTYPE, ChunkGeneration

    job = client.post("/jobs", json={"text": LONG, "seed": 8}).json()
    done = wait_status(client, job["id"], {"done"})
    raw = workers.redis.hgetall(f"{E2E_PREFIX}:job:{job['id']}:gen")
    kept = ChunkGeneration.all_from_hash(raw)
    assert sorted(kept) == list(range(done["n_chunks"]))
    for gen in kept.values():
        semantic = np.frombuffer(gen.semantic, TOKEN_DTYPE)
        coarse = np.frombuffer(gen.coarse, TOKEN_DTYPE).reshape(2, -1)
        fine = np.frombuffer(gen.fine, TOKEN_DTYPE).reshape(8, -1)
        assert len(semantic) > 0 and semantic.min() >= 0 and semantic.max() < 10_000
        assert fine.shape[1] == coarse.shape[1] > 0
        assert (fine[:2] == coarse).all()  # the fine stage keeps the coarse codebooks
        assert fine.min() >= 0 and fine.max() < 1024
    # it lives as long as the output: the same TTL
    ttl_out = workers.redis.ttl(f"{E2E_PREFIX}:job:{job['id']}:out")
    ttl_gen = workers.redis.ttl(f"{E2E_PREFIX}:job:{job['id']}:gen")
    assert abs(ttl_out - ttl_gen) <= 1 and ttl_gen > 0
