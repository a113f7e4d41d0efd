"""The chunk checks through the service (issue 16): a worker whose thresholds fail every
attempt retries each chunk, the attempts and checks travel in the Redis chunk event, the
websocket events and /metrics, a fixed seed gives the same audio twice, and /readyz says
which checks run."""

from __future__ import annotations

import json
import uuid

import httpx
import redis
from websockets.sync.client import connect

from app.queue.keys import Keys
from app.queue.wire import Chunk, Done, decode_event
from tests.support.servers import Workers
from tests.support.ws import read_until_done

# The random model never stops: 100 semantic tokens for a text estimated at 1.13 s (56),
# 1.77 times the estimate, over a run_on threshold of 1.01 with no slack: every attempt fails.
BODY = {"text": "Hello there.", "max_duration_s": 2.0, "seed": 5}
STRICT = {
    "BARK_QUALITY_ATTEMPTS": "2",
    "BARK_QUALITY_ON_RANDOM_WEIGHTS": "true",
    "BARK_QUALITY_MAX_LENGTH_RATIO": "1.01",
    "BARK_QUALITY_LENGTH_SLACK_S": "0",
    "BARK_QUALITY_SKIP": "no_speech,late_end,asr",
}


def test_a_failing_chunk_is_retried_and_reported(make_api, redis_url, tiny_checkpoint, tmp_path):  # type: ignore[no-untyped-def]
    prefix = f"qual{uuid.uuid4().hex[:6]}"
    pool = Workers(redis_url, prefix, tiny_checkpoint, tmp_path, **STRICT)
    pool.start(1)
    try:
        server = make_api(prefix, max_duration_s=None)
        runs = []
        for _ in range(2):
            with connect(f"{server.ws_url}/ws/synthesize") as ws:
                ws.send(json.dumps(BODY))
                runs.append(read_until_done(ws, timeout=120))
        (events, pcm), (_, pcm_again) = runs
        assert pcm == pcm_again and len(pcm) > 0  # the same seed, the same retries, the same audio
        [chunk] = [e for e in events if e["type"] == "chunk"]
        assert chunk["attempts"] == 2 and chunk["all_failed"] is True
        failed = [(c["attempt"], c["kind"]) for c in chunk["checks"] if not c["passed"]]
        assert failed == [(0, "run_on"), (1, "run_on")]
        assert events[-1]["retried_chunks"] == 1 and events[-1]["failed_chunks"] == 1

        r = redis.Redis.from_url(redis_url)
        out = [decode_event(f) for _, f in r.xrange(Keys(prefix).out(events[0]["job_id"]))]
        [wire_chunk] = [e for e in out if isinstance(e, Chunk)]
        [done] = [e for e in out if isinstance(e, Done)]
        assert wire_chunk.attempts == 2 and wire_chunk.sent_attempt == 1 and wire_chunk.all_failed
        assert {c.kind for c in wire_chunk.checks} == {"run_on", "truncated", "loop"}
        assert (done.retried_chunks, done.failed_chunks) == (1, 1)

        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'bark_chunk_checks_failed_total{kind="run_on"} 4.0' in metrics  # 2 jobs x 2 attempts
        assert "bark_chunk_retries_total 2.0" in metrics
        assert "bark_chunks_all_attempts_failed_total 2.0" in metrics

        [worker] = httpx.get(f"{server.url}/readyz").json()["workers"]
        assert (
            worker["checks"]["run_on"] == "on" and worker["checks"]["no_speech"] == "off: BARK_QUALITY_SKIP"
        )
    finally:
        pool.stop()


def test_readyz_says_the_random_weights_turn_checks_off(make_api, redis_url, tiny_checkpoint, tmp_path):  # type: ignore[no-untyped-def]
    prefix = f"qual{uuid.uuid4().hex[:6]}"
    pool = Workers(redis_url, prefix, tiny_checkpoint, tmp_path)
    pool.start(1)
    try:
        server = make_api(prefix)
        with connect(f"{server.ws_url}/ws/synthesize") as ws:
            ws.send(json.dumps({"text": "Hello there.", "seed": 1}))
            events, _ = read_until_done(ws, timeout=120)
        [chunk] = [e for e in events if e["type"] == "chunk"]
        assert chunk["attempts"] == 1 and [c["kind"] for c in chunk["checks"]] == ["loop"]
        [worker] = httpx.get(f"{server.url}/readyz").json()["workers"]
        assert worker["checks"] == {
            "run_on": "off: random weights cannot give its signal",
            "truncated": "off: random weights cannot give its signal",
            "loop": "on",
            "no_speech": "off: random weights cannot give its signal",
            "late_end": "off: random weights cannot give its signal",
            "asr": "off: random weights cannot give its signal",
        }
    finally:
        pool.stop()
