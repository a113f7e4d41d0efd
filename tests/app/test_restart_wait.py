"""After a Redis restart every heartbeat has lapsed at once: a request then waits up to one
heartbeat interval for a worker to beat again instead of getting 503 at once."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from app.core.errors import Unavailable
from app.queue.keys import Keys
from app.queue.producer import NO_WORKER, NO_WORKER_YET, JobQueue
from app.queue.registry import Heartbeat
from app.queue.wire import Job
from tests.support.queues import job_queue

INTERVAL_S = 1.0


def _job() -> Job:
    now = time.time()
    return Job(
        id=uuid.uuid4().hex,
        text="hi",
        voice=None,
        voice_etag=None,
        params={},
        seed=1,
        submitted_at=now,
        deadline=now + 30,
    )


def _queue(url: str, prefix: str, **kwargs: object) -> JobQueue:
    return job_queue(url, prefix, heartbeat_interval_s=INTERVAL_S, **kwargs)


@pytest.fixture
def prefix() -> str:
    return f"rw{uuid.uuid4().hex[:8]}"


def _beat(url: str, prefix: str, ttl_s: float) -> None:
    Heartbeat(redis.Redis.from_url(url), Keys(prefix), "w0", ttl_s).update(state="idle")


def test_a_request_waits_for_a_worker_that_lapsed_a_moment_ago(redis_url, prefix):
    _beat(redis_url, prefix, ttl_s=0.2)
    time.sleep(0.4)  # lapsed, as every heartbeat is right after a Redis restart

    async def go() -> float:
        q = _queue(redis_url, prefix)
        started = time.monotonic()
        submit = asyncio.create_task(q.submit(_job()))
        await asyncio.sleep(0.4)
        _beat(redis_url, prefix, ttl_s=30)  # the worker's first beat after the restart
        assert await submit == 0
        return time.monotonic() - started

    assert 0.4 <= asyncio.run(go()) < INTERVAL_S + 0.5


def test_no_worker_ever_registered_is_503_at_once(redis_url, prefix):
    async def go() -> None:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="start one with `bark-worker`"):
            await _queue(redis_url, prefix).submit(_job())
        assert time.monotonic() - started < INTERVAL_S / 2

    asyncio.run(go())


def test_a_lapsed_worker_that_does_not_return_is_503_after_one_interval(redis_url, prefix):
    _beat(redis_url, prefix, ttl_s=0.2)
    time.sleep(0.4)

    async def go() -> None:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=NO_WORKER):
            await _queue(redis_url, prefix).submit(_job())
        assert INTERVAL_S <= time.monotonic() - started < INTERVAL_S + 1.0

    asyncio.run(go())


def test_bark_serve_says_its_own_workers_are_starting(redis_url, prefix):
    async def go() -> None:
        with pytest.raises(Unavailable) as info:
            await _queue(redis_url, prefix, local_workers=True).submit(_job())
        assert info.value.message == NO_WORKER_YET
        assert "bark-worker" not in info.value.message

    asyncio.run(go())
