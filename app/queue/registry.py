"""The worker registry: each worker's heartbeat, and the API's view of who is alive.

`{p}:worker:{id}` holds a worker's WorkerInfo with a TTL, so it vanishes if the worker dies;
the id is also scored into `{p}:workers:live` by when that heartbeat expires, so the API finds
live workers with one range read instead of a SCAN over the keyspace (which grows with every
job's output stream and cancel flag).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from .connection import REDIS_DOWN
from .keys import Keys
from .wire import WorkerInfo

log = logging.getLogger(__name__)


class Heartbeat:
    """The worker side: `update` changes what it says about itself, `beat` refreshes it."""

    def __init__(self, client: redis.Redis, keys: Keys, worker_id: str, ttl_s: float) -> None:
        self.redis = client
        self.keys = keys
        self.worker_id = worker_id
        self.ttl_ms = int(ttl_s * 1000)
        self.info = WorkerInfo(
            id=worker_id, host=socket.gethostname(), pid=os.getpid(), started_at=time.time()
        )
        self._lock = threading.Lock()

    def update(self, **changes: Any) -> None:
        if "jobs" in changes:
            changes["jobs"] = tuple(changes["jobs"])
        with self._lock:
            self.info = dataclasses.replace(self.info, **changes)
        self.beat()

    def beat(self) -> None:
        now = time.time()
        with self._lock:
            payload = dataclasses.replace(self.info, ts=now).to_json()
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.worker(self.worker_id), payload, px=self.ttl_ms)
                pipe.zadd(self.keys.workers_live, {self.worker_id: now + self.ttl_ms / 1000})
                pipe.execute()
        except REDIS_DOWN as exc:
            log.warning("heartbeat failed: %s", exc)

    def remove(self) -> None:
        with contextlib.suppress(*REDIS_DOWN), self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.worker(self.worker_id))
            pipe.zrem(self.keys.workers_live, self.worker_id)
            pipe.execute()


async def live_workers(client: aioredis.Redis, keys: Keys, ttl_s: float) -> list[WorkerInfo]:
    """The API side: heartbeats of live workers.

    A lapsed worker stays in the sorted set one TTL longer (then it is forgotten on the way),
    so `recently_live` can tell a fleet that lapsed a moment ago from none at all."""
    now = time.time()
    async with client.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(keys.workers_live, "-inf", f"({now - ttl_s}")
        pipe.zrangebyscore(keys.workers_live, now, "+inf")
        _, ids = await pipe.execute()
    if not ids:
        return []
    values = await client.mget([keys.worker(i.decode()) for i in ids])
    infos = [WorkerInfo.from_json(raw) for raw in values if raw is not None]
    # A worker that froze keeps its key until the TTL; trust the timestamp too.
    return [info for info in infos if time.time() - info.ts <= ttl_s]


async def recently_live(client: aioredis.Redis, keys: Keys, within_s: float) -> bool:
    """Was a worker registered less than `within_s` ago? After a Redis restart every heartbeat
    has lapsed at once (the AOF keeps the set), and the workers beat again within an interval."""
    return int(await client.zcount(keys.workers_live, time.time() - within_s, "+inf")) > 0


def forget_all(client: redis.Redis, keys: Keys) -> int:
    """Drop every registration (for a fresh embedded Redis: its workers are all new)."""
    stale = [k for k in client.scan_iter(match=keys.worker("*"), count=1000)]
    with client.pipeline(transaction=False) as pipe:
        if stale:
            pipe.delete(*stale)
        pipe.delete(keys.workers_live)
        pipe.execute()
    return len(stale)
