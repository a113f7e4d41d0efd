"""Fair order in the worker (issue 17, item 5) on a real Redis server, driven step by step.

Jobs are queued through the API's real submit script (which writes each entry's owner) and
taken with the real Consumer and Worker, so the take script, the backlog it parks entries in
and the reclaim path that must leave them alone are checked without timing races.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from app.core.errors import QueueFull
from app.queue.connection import sync_client
from app.queue.consumer import Consumer, Delivery
from app.queue.keys import BACKLOG, Keys
from app.queue.wire import Done, Job
from app.worker.background import ActiveJobs, Heartbeat
from app.worker.loop import Worker
from tests.support.queues import job_queue
from tests.support.servers import register_worker

WINDOW = 8  # waiting jobs a take chooses among; at 1 (FIFO) the fairness tests fail
IDLE_MS = 300


def job(owner: str) -> Job:
    now = time.time()
    return Job(uuid.uuid4().hex, "hi", None, None, {}, 7, now, now + 30, owner=owner)


def submit(url: str, prefix: str, jobs: list[Job], queue_max: int = 16) -> list[int]:
    """Queue `jobs` through the API's submit script; their queue positions."""

    async def go() -> list[int]:
        q = job_queue(url, prefix, queue_max)
        await q.ensure_group()
        return [await q.submit(j) for j in jobs]

    return asyncio.run(go())


def stats(url: str, prefix: str) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        q = job_queue(url, prefix, 1)
        s = await q.stats()
        return s.waiting, s.running

    return asyncio.run(go())


def consumer(url: str, prefix: str, name: str) -> Consumer:
    c = Consumer(
        sync_client(url, 2.0),
        Keys(prefix),
        name,
        claim_idle_ms=IDLE_MS,
        job_ttl_s=60,
        stream_ttl_s=120,
        fair_window=WINDOW,
    )
    c.ensure_group()
    return c


def worker_of(c: Consumer, active: ActiveJobs) -> Worker:
    """The real consume loop's taking part (no pipeline: the tests start nothing)."""
    return Worker(
        c,
        runner=None,  # type: ignore[arg-type]
        heartbeat=Heartbeat(c.redis, c.keys, c.name, 5),
        active=active,
        batch_size=4,
        max_deliveries=3,
        heartbeat_interval_s=1,
        claim_idle_s=IDLE_MS / 1000,
    )


def parked(r: redis.Redis, keys: Keys) -> int:
    info: Any = r.xpending(keys.jobs, keys.group)
    return sum(c["pending"] for c in info["consumers"] if c["name"] == BACKLOG.encode())


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.job.id for d in deliveries if d.job]


@pytest.fixture
def prefix(redis_url: str) -> str:
    name = f"fair{uuid.uuid4().hex[:8]}"
    register_worker(redis_url, name)  # the API admits jobs only while some worker is live
    return name


def test_a_take_gives_the_key_with_fewer_rows_its_turn(redis_url, prefix):
    a_jobs, b = [job("A") for _ in range(6)], job("B")
    submit(redis_url, prefix, [*a_jobs, b])
    taken = consumer(redis_url, prefix, "w1").take(2, {})
    assert ids(taken) == [a_jobs[0].id, b.id]  # A's oldest first (a tie), then B (0 rows < 1)
    assert [d.deliveries for d in taken] == [1, 1]  # taken from the backlog: still one delivery
    assert parked(redis.Redis.from_url(redis_url), Keys(prefix)) == 5  # A's other five wait there


def test_rows_running_in_the_batch_put_their_key_behind(redis_url, prefix):
    a_jobs, b = [job("A") for _ in range(6)], job("B")
    submit(redis_url, prefix, [*a_jobs, b])
    c = consumer(redis_url, prefix, "w1")
    assert ids(c.take(1, {"A": 2})) == [b.id]
    assert ids(c.take(2, {"A": 2})) == [a_jobs[0].id, a_jobs[1].id]  # only A's left: in order


def test_the_worker_passes_its_running_rows_when_jobs_join(redis_url, prefix):
    """Worker._more asks for the batch's unsettled jobs per key: with two of A's running, B's
    job (queued after three more of A's) joins first; a settled job no longer counts, so then
    A's next job (one row each, and older) goes before B's second."""
    first = [job("A") for _ in range(2)]
    submit(redis_url, prefix, first)
    c = consumer(redis_url, prefix, "w1")
    active = ActiveJobs()
    worker = worker_of(c, active)
    running = worker._take_new()
    assert ids(running) == [j.id for j in first]
    later, b = [job("A") for _ in range(3)], job("B")
    submit(redis_url, prefix, [*later, b])
    for d in running:
        active.add(d)  # as the runner does once a job starts
    (joined,) = worker._more(1)
    assert ids([joined]) == [b.id]
    active.add(joined)
    c.finish(running[0], Done())  # one of A's ends: A and B have one row each
    b2 = job("B")
    submit(redis_url, prefix, [b2])
    assert ids(worker._more(1)) == [later[0].id]  # a tie: the oldest entry


def test_an_idle_worker_blocks_for_the_next_job(redis_url, prefix):
    """With nothing waiting, a new batch is not an empty take: the worker blocks on the
    stream (up to BLOCK_MS) and gets the job that arrives meanwhile."""
    c = consumer(redis_url, prefix, "w1")
    worker = worker_of(c, ActiveJobs())
    late = job("A")
    timer = threading.Timer(0.15, submit, (redis_url, prefix, [late]))
    timer.start()
    try:
        assert ids(worker._take_new()) == [late.id]
    finally:
        timer.join()


def test_backlog_entries_are_not_reclaimed_but_a_dead_workers_are(redis_url, prefix):
    r, keys = redis.Redis.from_url(redis_url), Keys(prefix)
    submit(redis_url, prefix, [job("A")])
    (stranded,) = consumer(redis_url, prefix, "dead").read(1, None)  # ... and that worker dies
    submit(redis_url, prefix, [job("A") for _ in range(3)])
    live = consumer(redis_url, prefix, "live")
    (mine,) = live.take(1, {})
    time.sleep(IDLE_MS / 1000 + 0.15)  # the dead worker's entry and the parked two: all idle
    live.touch([mine.entry_id])  # a running job is kept fresh
    assert parked(r, keys) == 2 and live.has_reclaimable()
    (again,) = live.reclaim(10)
    assert (again.entry_id, again.deliveries) == (stranded.entry_id, 2)  # a redelivery, counted
    assert not live.has_reclaimable()  # idle parked entries are not a dead worker's
    assert live.reclaim(10) == [] and parked(r, keys) == 2
    assert stats(redis_url, prefix) == (2, 2)  # parked: waiting; taken and reclaimed: running


def test_parked_entries_count_as_waiting_for_the_queue_bound(redis_url, prefix):
    assert submit(redis_url, prefix, [job("A") for _ in range(3)], queue_max=3) == [0, 1, 2]
    consumer(redis_url, prefix, "w1").take(1, {})  # one runs, two park
    assert submit(redis_url, prefix, [job("B")], queue_max=3) == [2]  # two ahead of it
    assert stats(redis_url, prefix) == (3, 1)
    with pytest.raises(QueueFull, match="queue is full"):
        submit(redis_url, prefix, [job("B")], queue_max=3)


def test_entries_deleted_while_pending_are_settled(redis_url, prefix):
    r, keys = redis.Redis.from_url(redis_url), Keys(prefix)
    gone, kept = job("A"), job("B")
    submit(redis_url, prefix, [gone])
    (dead,) = consumer(redis_url, prefix, "dead").read(1, None)
    r.xdel(keys.jobs, dead.entry_id)
    submit(redis_url, prefix, [kept])
    live = consumer(redis_url, prefix, "live")
    (mine,) = live.take(1, {})
    assert ids([mine]) == [kept.id]
    time.sleep(IDLE_MS / 1000 + 0.15)
    live.touch([mine.entry_id])
    assert live.reclaim(10) == []  # the deleted one is acked, not handed out
    info: Any = r.xpending(keys.jobs, keys.group)
    assert info["pending"] == 1  # only `kept`, held by `live`
