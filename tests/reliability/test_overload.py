"""Offered load at 5x what the workers sustain: only 200, 429 (with Retry-After) and 503 come
back, the queue never grows past its bound, and admitted requests keep a bounded latency."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import httpx

from .reliability_kit import new_prefix, percentile, record, waiting

QUEUE_MAX = 4
CALIBRATE_S = 6.0
OVERLOAD = 5
# Rows a worker runs at once (its BARK_BATCH_SIZE default) and workers: with the queue full,
# an admitted job waits behind at most QUEUE_MAX queued jobs and WORKERS * BATCH running ones.
BATCH = 4
WORKERS = 2
# The offered load shares the 2 cores with the workers (the API answers hundreds of 429s
# meanwhile), so the capacity measured before is not what the workers keep during the overload
# (RELIABILITY.md's run: p99 2.15 s, 1.38x its drain time of 13 jobs at 8.33 jobs/s). The bound
# allows twice the drain time.
CONTENTION = 2.0
OFFER_S = 12.0
MAX_REQUESTS = 400  # bound, whatever the calibration says
BODY = {"text": "Overload test, one short sentence.", "format": "pcm"}


async def _closed_loop(url: str, clients: int, seconds: float) -> int:
    """Completed requests of `clients` callers back to back: the sustainable rate."""
    done = 0
    end = time.monotonic() + seconds

    async def caller(http: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        while time.monotonic() < end:
            r = await http.post("/synthesize", json={**BODY, "seed": i})
            done += r.status_code == 200

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await asyncio.gather(*(caller(http, i) for i in range(clients)))
    return done


async def _open_loop(url: str, rate: float, seconds: float) -> list[tuple[int, float, str | None]]:
    """Requests fired at `rate` per second whatever the answers: (status, seconds, Retry-After)."""
    out: list[tuple[int, float, str | None]] = []

    async def one(http: httpx.AsyncClient, i: int) -> None:
        started = time.monotonic()
        r = await http.post("/synthesize", json={**BODY, "seed": i})
        out.append((r.status_code, time.monotonic() - started, r.headers.get("retry-after")))

    limits = httpx.Limits(max_connections=MAX_REQUESTS, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        tasks = []
        n = min(MAX_REQUESTS, int(rate * seconds))
        start = time.monotonic()
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(http, i)))
        await asyncio.gather(*tasks)
    return out


def test_overload_at_5x_capacity(make_api, make_workers):
    prefix = new_prefix("load")
    pool = make_workers(prefix, WORKERS)
    api = make_api(prefix, queue_max=QUEUE_MAX, retry_after_s=1)
    done = asyncio.run(_closed_loop(api.url, WORKERS * BATCH, CALIBRATE_S))
    capacity = done / CALIBRATE_S
    assert capacity > 0
    # the time for everything ahead of an admitted job, and its own, to pass at capacity
    drain_s = (QUEUE_MAX + WORKERS * BATCH + 1) / capacity

    depths: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            depths.append(waiting(pool.redis, pool.keys))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results = asyncio.run(_open_loop(api.url, OVERLOAD * capacity, OFFER_S))
    sampling.set()
    sampler.join(5)

    statuses = Counter(status for status, _, _ in results)
    admitted = [seconds for status, seconds, _ in results if status == 200]
    refused = [(status, retry) for status, _, retry in results if status in (429, 503)]
    record(
        "overload",
        capacity_jobs_per_s=round(capacity, 2),
        offered_per_s=round(OVERLOAD * capacity, 2),
        requests=len(results),
        statuses=dict(statuses),
        queue_max=QUEUE_MAX,
        max_queue_depth=max(depths),
        p50_admitted_s=round(percentile(admitted, 50), 2),
        p99_admitted_s=round(percentile(admitted, 99), 2),
        max_admitted_s=round(max(admitted), 2),
        latency_bound_s=round(CONTENTION * drain_s, 2),
    )
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses[429] > 0, "5x capacity never filled the queue: the test proved nothing"
    assert all(retry is not None and int(retry) >= 1 for _, retry in refused)
    assert max(depths) <= QUEUE_MAX
    assert admitted
    # bounded latency: admitted jobs wait for a full queue to drain, not for the whole offer
    assert percentile(admitted, 99) <= CONTENTION * drain_s, (percentile(admitted, 99), drain_s)
