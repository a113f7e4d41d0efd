"""A job that arrives while a worker's batch runs joins that batch at its next stage, and
still gets exactly the audio it gets alone."""

from __future__ import annotations

import json
import uuid

import httpx
import redis
from websockets.sync.client import connect

from app.queue.keys import Keys
from app.queue.wire import Chunk, decode_event
from tests.support.servers import Workers
from tests.support.ws import read_until_done

# greedy, no EOS stop: 4 s of audio, 200 semantic tokens; A is still in its semantic stage
# when B arrives a few milliseconds after A started
BODY = {
    "text": "Hello there.",
    "text_temp": 0,
    "waveform_temp": 0,
    "fine_temp": 0,
    "min_eos_p": None,
    "max_duration_s": 4.0,
}


def _stage_batches(r: redis.Redis, keys: Keys, job_id: str) -> list[dict[str, int]]:
    events = [decode_event(fields) for _, fields in r.xrange(keys.out(job_id))]
    return [e.stage_batch for e in events if isinstance(e, Chunk)]


def test_a_job_arriving_mid_batch_joins_it(make_api, redis_url, tiny_checkpoint, tmp_path):  # type: ignore[no-untyped-def]
    prefix = f"join{uuid.uuid4().hex[:6]}"
    pool = Workers(redis_url, prefix, tiny_checkpoint, tmp_path)
    pool.start(1)
    try:
        server = make_api(prefix, max_duration_s=None)  # the suite's cap would make A too short
        with connect(f"{server.ws_url}/ws/synthesize") as a, connect(f"{server.ws_url}/ws/synthesize") as b:
            a.send(json.dumps({**BODY, "seed": 1}))
            queued = json.loads(a.recv(timeout=30))
            assert json.loads(a.recv(timeout=30))["type"] == "started"  # A is running alone
            b.send(json.dumps({**BODY, "text": "Other words here.", "seed": 2}))
            read_until_done(a, timeout=120)
            b_events, b_pcm = read_until_done(b, timeout=120)
        a_id, b_id = queued["job_id"], b_events[0]["job_id"]
        r = redis.Redis.from_url(redis_url)
        keys = Keys(prefix)
        # B joined at the first stage boundary after it arrived: the semantic run (when A's
        # had not started yet) or the coarse one (A waited there while B's semantic ran alone)
        [a_batches] = _stage_batches(r, keys, a_id)
        assert _stage_batches(r, keys, b_id) == [a_batches]
        assert a_batches["coarse"] == a_batches["fine"] == 2 and a_batches["semantic"] in (1, 2)
        with httpx.Client(base_url=server.url, timeout=120) as http:
            alone = http.post(
                "/synthesize", json={**BODY, "text": "Other words here.", "seed": 2, "format": "pcm"}
            )
        assert alone.status_code == 200 and alone.content == b_pcm
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'bark_stage_batch_rows_bucket{le="1.0",stage="coarse"} 1.0' in metrics  # the lone rerun
    finally:
        pool.stop()
