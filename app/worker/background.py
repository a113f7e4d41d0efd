"""The worker's background thread: heartbeat, claim keep-alive, and cancel-flag polling.

The pipeline runs in the main thread and only asks `should_cancel()` between decode steps;
answering from memory (set here from Redis every `tick`) keeps that call free of I/O.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from ..queue.connection import REDIS_DOWN
from ..queue.keys import Keys
from .consumer import Consumer, Delivery

log = logging.getLogger(__name__)


@dataclass
class ActiveJob:
    delivery: Delivery
    cancelled: threading.Event = field(default_factory=threading.Event)
    dropped_at: float | None = None  # epoch seconds the pipeline was first told to stop

    @property
    def job_id(self) -> str:
        assert self.delivery.job is not None  # only parsed jobs become active
        return self.delivery.job.id

    def should_cancel(self) -> bool:
        """Asked by the pipeline between decode steps; a True drops the row there."""
        job = self.delivery.job
        stop = self.cancelled.is_set() or (job is not None and time.time() > job.deadline)
        if stop and self.dropped_at is None:
            self.dropped_at = time.time()
        return stop


class ActiveJobs:
    """Jobs this worker is running now, shared between the main and background threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, ActiveJob] = {}

    def add(self, delivery: Delivery) -> ActiveJob:
        active = ActiveJob(delivery)
        with self._lock:
            self._jobs[active.job_id] = active
        return active

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def snapshot(self) -> list[ActiveJob]:
        with self._lock:
            return list(self._jobs.values())


class Heartbeat:
    """`{p}:worker:{id}` = JSON about this worker, with a TTL: it vanishes if we die.

    The id is also scored into `{p}:workers:live` by its expiry time, so the API finds live
    workers with one range read instead of a SCAN over the whole keyspace (which grows with
    every job's output stream and cancel flag)."""

    def __init__(self, client: redis.Redis, keys: Keys, worker_id: str, ttl_s: float) -> None:
        self.redis = client
        self.key = keys.worker(worker_id)
        self.live = keys.workers_live
        self.worker_id = worker_id
        self.ttl_ms = int(ttl_s * 1000)
        self.info: dict[str, Any] = {
            "id": worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "state": "loading",
            "jobs": [],
            "jobs_done": 0,
            "started_at": time.time(),
        }
        self._lock = threading.Lock()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.info.update(fields)
        self.beat()

    def beat(self) -> None:
        now = time.time()
        with self._lock:
            payload = json.dumps({**self.info, "ts": now})
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self.key, payload, px=self.ttl_ms)
                pipe.zadd(self.live, {self.worker_id: now + self.ttl_ms / 1000})
                pipe.execute()
        except REDIS_DOWN as exc:
            log.warning("heartbeat failed: %s", exc)

    def remove(self) -> None:
        with contextlib.suppress(*REDIS_DOWN), self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.key)
            pipe.zrem(self.live, self.worker_id)
            pipe.execute()


class Background(threading.Thread):
    def __init__(
        self,
        consumer: Consumer,
        heartbeat: Heartbeat,
        active: ActiveJobs,
        *,
        heartbeat_interval_s: float,
        tick_s: float = 0.1,
    ) -> None:
        super().__init__(name="bark-worker-background", daemon=True)
        self.consumer = consumer
        self.heartbeat = heartbeat
        self.active = active
        self.interval = heartbeat_interval_s
        self.tick = tick_s
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        next_beat = 0.0
        while not self._halt.wait(self.tick):
            try:
                jobs = self.active.snapshot()
                flagged = self.consumer.cancelled([a.job_id for a in jobs])
                for a in jobs:
                    if a.job_id in flagged and not a.cancelled.is_set():
                        log.info("job cancelled by client", extra={"job_id": a.job_id})
                        a.cancelled.set()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.interval
                    self.heartbeat.update(jobs=[a.job_id for a in jobs])
                    self.consumer.touch([a.delivery.entry_id for a in jobs])
            except REDIS_DOWN as exc:
                log.warning("background redis call failed: %s", exc)
            except Exception:  # never let the keep-alive thread die silently
                log.exception("background tick failed")


class LoadingBeat(threading.Thread):
    """Beats `state=loading` while the model loads (torch import and weights take seconds to
    minutes). The API counts a loading worker as alive: jobs wait for it rather than fail with
    "no live worker" while every worker restarts at once (say, after a poison job)."""

    def __init__(self, heartbeat: Heartbeat, interval_s: float) -> None:
        super().__init__(name="bark-worker-loading", daemon=True)
        self.heartbeat = heartbeat
        self.interval = interval_s
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.heartbeat.beat()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
