"""Everything a request handler needs, built once per app (not module globals)."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from ..core.settings import Settings
from ..queue.connection import async_client
from ..queue.keys import Keys
from ..queue.producer import JobQueue
from .drain import Drain
from .metrics import Metrics
from .voice_catalog import VoiceCatalog


@dataclass
class AppState:
    settings: Settings
    redis: aioredis.Redis
    keys: Keys
    queue: JobQueue
    voices: VoiceCatalog
    metrics: Metrics
    drain: Drain

    @classmethod
    def build(cls, settings: Settings, redis_url: str) -> AppState:
        redis = async_client(redis_url, settings.redis_timeout_s)
        keys = Keys(settings.redis_prefix)
        queue = JobQueue(
            redis,
            keys,
            queue_max=settings.queue_max,
            retry_after_s=settings.retry_after_s,
            job_ttl_s=settings.job_ttl_s,
            heartbeat_ttl_s=settings.heartbeat_ttl_s,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            local_workers=settings.redis_url is None,  # bark-serve's embedded Redis and workers
        )
        return cls(settings, redis, keys, queue, VoiceCatalog(redis, keys), Metrics(), Drain())
