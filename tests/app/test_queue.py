"""The queue's contract on a real Redis server, driven from both sides by hand.

The "worker" here is the real Consumer class run step by step by the test, so delivery
counts, reclaim, keep-alive and dead-lettering are checked without timing races.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from app.api.errors import error_headers, status_of
from app.core.errors import DeadlineExceeded, QueueFull, Unavailable
from app.queue.connection import sync_client
from app.queue.consumer import Consumer
from app.queue.keys import Keys
from app.queue.registry import live_workers
from app.queue.wire import Chunk, Done, Failed, Job, Started
from app.worker.background import ActiveJobs, Heartbeat
from app.worker.loop import Worker
from tests.support.queues import job_queue as queue
from tests.support.servers import register_worker


def job(text: str = "hi", deadline_s: float = 30) -> Job:
    now = time.time()
    return Job(
        id=uuid.uuid4().hex,
        text=text,
        voice=None,
        voice_etag=None,
        params={},
        seed=7,
        submitted_at=now,
        deadline=now + deadline_s,
    )


def consumer(url: str, prefix: str, name: str, claim_idle_ms: int = 300) -> Consumer:
    c = Consumer(
        sync_client(url, 2.0), Keys(prefix), name, claim_idle_ms=claim_idle_ms, job_ttl_s=60, stream_ttl_s=120
    )
    c.ensure_group()
    return c


@pytest.fixture
def prefix(redis_url: str) -> str:
    return f"q{uuid.uuid4().hex[:8]}"


def test_no_live_worker_is_503(redis_url, prefix):
    async def go():
        q = queue(redis_url, prefix)
        with pytest.raises(Unavailable) as info:
            await q.submit(job())
        assert error_headers(info.value)["Retry-After"] == "3"

    asyncio.run(go())


def test_live_workers_come_from_the_registry_and_expire(redis_url, prefix):
    """A worker that stops beating drops out of the API's view and of the registry, and
    unrelated keys (job streams, cancel flags) play no part in finding workers."""
    r = redis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    for i in range(500):
        r.set(keys.cancel(f"j{i}"), b"1", ex=60)
    Heartbeat(r, keys, "long", ttl_s=30).update(state="idle")
    Heartbeat(r, keys, "short", ttl_s=0.3).update(state="busy")

    async def go():
        q = queue(redis_url, prefix)
        assert sorted(w.id for w in await q.workers()) == ["long", "short"]
        await asyncio.sleep(0.5)
        assert [w.id for w in await q.workers()] == ["long"]

        # the registry remembers a lapsed worker one TTL longer (a Redis restart's grace)
        assert r.zrange(keys.workers_live, 0, -1) == [b"short", b"long"]
        await live_workers(q.redis, keys, ttl_s=0.1)
        assert r.zrange(keys.workers_live, 0, -1) == [b"long"]

    asyncio.run(go())
    Heartbeat(r, keys, "long", ttl_s=30).remove()
    assert r.zcard(keys.workers_live) == 0 and not r.exists(keys.worker("long"))


def test_bounded_queue_positions_then_429(redis_url, prefix):
    register_worker(redis_url, prefix)

    async def go():
        q = queue(redis_url, prefix, queue_max=3)
        await q.ensure_group()
        assert [await q.submit(job()) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(QueueFull) as info:
            await q.submit(job())
        assert status_of(info.value) == 429 and error_headers(info.value)["Retry-After"] == "3"
        # a worker taking a job frees a slot: only waiting jobs count against the bound
        consumer(redis_url, prefix, "c1").read(1, None)
        assert await q.submit(job()) == 2
        stats = await q.stats()
        assert (stats.waiting, stats.running) == (3, 1)

    asyncio.run(go())


def test_rerun_chunks_are_forwarded_once(redis_url, prefix):
    r = redis.Redis.from_url(redis_url)
    register_worker(redis_url, prefix)
    j = job()

    async def go():
        q = queue(redis_url, prefix)
        await q.ensure_group()
        await q.submit(j)
        first = consumer(redis_url, prefix, "first")
        (delivery,) = first.read(1, None)
        first.emit(j.id, Started(attempt=1))
        first.emit(j.id, Chunk(0, pcm=b"\x01\x00"))
        first.emit(j.id, Chunk(1, pcm=b"\x02\x00"))
        # ... the first worker dies; another reclaims the entry and starts over at seq 0
        time.sleep(0.4)
        second = consumer(redis_url, prefix, "second")
        (again,) = second.reclaim(10)
        assert again.entry_id == delivery.entry_id and again.deliveries == 2
        second.emit(j.id, Started(attempt=2))
        for seq, pcm in enumerate([b"\x01\x00", b"\x02\x00", b"\x03\x00"]):
            second.emit(j.id, Chunk(seq, pcm=pcm))
        second.finish(again, Done(rtf=0.5))
        events = [e async for e in q.follow(j.id, time.time() + 10)]
        assert [(type(e).__name__, getattr(e, "seq", None)) for e in events] == [
            ("Started", None),
            ("Chunk", 0),
            ("Chunk", 1),
            ("Chunk", 2),
            ("Done", None),
        ]
        assert events[0] == Started(attempt=1) and events[-1] == Done(rtf=0.5)
        assert b"".join(e.pcm for e in events if isinstance(e, Chunk)) == b"\x01\x00\x02\x00\x03\x00"
        # settled: acked and removed from the stream
        assert (await q.stats()).running == 0 and r.xlen(Keys(prefix).jobs) == 0

    asyncio.run(go())


def test_touch_keeps_a_long_job_from_being_stolen(redis_url, prefix):
    register_worker(redis_url, prefix)

    async def go():
        q = queue(redis_url, prefix)
        await q.ensure_group()
        await q.submit(job())

    asyncio.run(go())
    owner = consumer(redis_url, prefix, "owner")
    thief = consumer(redis_url, prefix, "thief")
    (delivery,) = owner.read(1, None)
    for _ in range(4):  # 4 x 0.15 s > the 0.3 s idle bound, but touched every 0.15 s
        time.sleep(0.15)
        owner.touch([delivery.entry_id])
        assert thief.reclaim(10) == []
    eid = delivery.entry_id
    pending = owner.redis.xpending_range(owner.keys.jobs, owner.keys.group, min=eid, max=eid, count=1)
    assert pending[0]["times_delivered"] == 1  # type: ignore[index]  # touching is not a redelivery
    time.sleep(0.4)
    assert [d.entry_id for d in thief.reclaim(10)] == [delivery.entry_id]


def test_dead_letter_after_max_deliveries(redis_url, prefix):
    r = redis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    register_worker(redis_url, prefix)
    j = job()

    async def submit():
        q = queue(redis_url, prefix)
        await q.ensure_group()
        await q.submit(j)

    asyncio.run(submit())
    c = consumer(redis_url, prefix, "crashy")
    (d,) = c.read(1, None)
    for expected in (2, 3):
        time.sleep(0.35)
        (d,) = c.reclaim(10)
        assert d.deliveries == expected
    c.dead_letter(d, "delivered 3 times")
    assert r.xlen(keys.dead) == 1 and r.xlen(keys.jobs) == 0

    async def follow():
        q = queue(redis_url, prefix)
        events = [e async for e in q.follow(j.id, time.time() + 5)]
        return events

    (event,) = asyncio.run(follow())
    assert isinstance(event, Failed) and event.type == "generation_failed"
    assert "3 times" in event.message
    assert r.ttl(keys.out(j.id)) > 0  # expired after the job ends


def test_follow_times_out_at_the_deadline(redis_url, prefix):
    register_worker(redis_url, prefix)

    async def go():
        q = queue(redis_url, prefix)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            async for _ in q.follow("nobody", time.time() + 0.6):
                pass
        assert time.monotonic() - started < 2

    asyncio.run(go())


def test_redis_down_is_503_fast():
    async def go():
        q = queue("redis://127.0.0.1:1", "down")
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await q.submit(job())
        assert time.monotonic() - started < 5

    asyncio.run(go())


def test_joining_stops_while_a_dead_workers_job_waits(redis_url, prefix):
    """Jobs join a running batch only until a dead worker's job is found waiting: a batch that
    kept taking new jobs would never let this worker reclaim it."""
    register_worker(redis_url, prefix)

    async def submit(n: int) -> None:
        q = queue(redis_url, prefix, queue_max=10)
        await q.ensure_group()
        for _ in range(n):
            await q.submit(job())

    asyncio.run(submit(4))
    dead = consumer(redis_url, prefix, "dead")
    (stranded,) = dead.read(1, None)  # ... and its worker dies holding it
    live = consumer(redis_url, prefix, "live")
    client = sync_client(redis_url, 2.0)
    worker = Worker(
        live,
        runner=None,
        heartbeat=Heartbeat(client, Keys(prefix), "live", 5),  # type: ignore[arg-type]
        active=ActiveJobs(),
        batch_size=4,
        max_deliveries=3,
        heartbeat_interval_s=1,
        claim_idle_s=0.3,
    )
    assert not live.has_reclaimable()
    assert len(worker._more(1)) == 1  # nothing stranded yet: a new job joins
    time.sleep(0.45)  # the dead worker's entry is now idle past claim_idle
    assert live.has_reclaimable()
    assert worker._more(1) == []  # two jobs still wait, but joining has closed
    assert worker._more(1) == []
    assert [d.entry_id for d in live.reclaim(1)] == [stranded.entry_id]
