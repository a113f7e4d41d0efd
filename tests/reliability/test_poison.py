"""A poison job (fault injection: it kills its worker on every delivery) is dead-lettered after
max_deliveries, its client gets an error, and the jobs around it are untouched."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx

from app.worker.faults import CRASH, ERROR
from tests.support.ws import ws_job

from .reliability_kit import Restarter, record, sentences, settled, wait_until

MAX_DELIVERIES = 3  # the workers' default BARK_MAX_DELIVERIES
HEALTHY = 6


def _bodies() -> list[dict]:
    return [
        {"text": f"Healthy job number {i}. It has two sentences.", "seed": 50 + i, "format": "pcm"}
        for i in range(HEALTHY)
    ]


def test_crashing_job_is_dead_lettered_and_harms_no_other(make_api, workers):
    api = make_api()
    keys, redis_ = workers.keys, workers.redis
    dead_before = redis_.xlen(keys.dead)
    with httpx.Client(base_url=api.url, timeout=120) as http:
        reference = [http.post("/synthesize", json=b).content for b in _bodies()]
        restarter = Restarter(workers, 2, max_restarts=MAX_DELIVERIES + 2)
        restarter.start()
        try:
            with ThreadPoolExecutor(HEALTHY + 1) as pool:
                poison = pool.submit(http.post, "/synthesize", json={"text": f"{CRASH} poison"})
                healthy = list(pool.map(lambda b: http.post("/synthesize", json=b), _bodies()))
                poisoned = poison.result()
        finally:
            restarter.stop()
    dead = redis_.xrange(keys.dead)[dead_before:]
    deliveries = int(dead[0][1][b"deliveries"]) if dead else None
    unaffected = sum(
        1 for r, ref in zip(healthy, reference, strict=True) if r.status_code == 200 and r.content == ref
    )
    record(
        "poison",
        max_deliveries=MAX_DELIVERIES,
        worker_crashes=restarter.restarts,
        dead_lettered=len(dead),
        dead_lettered_on_delivery=deliveries,
        client_status=poisoned.status_code,
        client_error=poisoned.json()["error"]["type"],
        healthy_jobs=HEALTHY,
        healthy_unaffected=unaffected,
    )
    assert poisoned.status_code == 500, poisoned.text
    assert f"delivered {MAX_DELIVERIES + 1} times" in poisoned.json()["error"]["message"]
    assert len(dead) == 1 and json.loads(dead[0][1][b"job"])["text"].startswith(CRASH)
    assert deliveries == MAX_DELIVERIES + 1  # crashed on 1..K, parked on K+1 without running
    assert restarter.restarts == MAX_DELIVERIES
    assert unaffected == HEALTHY
    assert wait_until(lambda: settled(redis_, keys) == {"outstanding": 0, "held": 0}, 10)


def test_failing_row_fails_alone_in_its_batch(make_api, workers):
    """A job whose generation raises gets its 500; its batch-mates still get their audio. The
    failing job is sent once both workers are busy, so it joins a running batch: its `started`
    event must say it shared one, or the test proved nothing."""
    api = make_api()
    bodies = [{**b, "text": b["text"] + " " + sentences(2, f"-{i}")} for i, b in enumerate(_bodies())]
    with httpx.Client(base_url=api.url, timeout=120) as http:
        reference = [http.post("/synthesize", json=b).content for b in bodies]
        with ThreadPoolExecutor(HEALTHY) as pool:
            pending = [pool.submit(http.post, "/synthesize", json=b) for b in bodies]
            busy = wait_until(lambda: all(h["state"] == "busy" for h in workers.heartbeats()), 30, 0.02)
            bad = ws_job(api.ws_url, {"text": f"{ERROR} broken"})
            healthy = [f.result() for f in pending]
    batch = next((e["batch"] for e in bad.events if e["type"] == "started"), None)
    record(
        "failing_row",
        workers_busy_before=busy,
        failing_job_batch=batch,
        outcome=bad.outcome,
        healthy_unaffected=sum(r.content == ref for r, ref in zip(healthy, reference, strict=True)),
    )
    assert batch is not None and batch > 1, f"the failing job ran alone (batch {batch})"
    assert bad.outcome == "error 500" and bad.events[-1]["error"]["type"] == "generation_failed"
    assert [r.status_code for r in healthy] == [200] * HEALTHY
    assert [r.content for r in healthy] == reference
