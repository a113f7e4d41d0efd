"""The API's JobQueue on a test Redis, with the short bounds the queue tests use."""

from __future__ import annotations

from typing import Any

from app.queue.connection import async_client
from app.queue.keys import Keys
from app.queue.producer import JobQueue


def job_queue(url: str, prefix: str, queue_max: int = 4, **kwargs: Any) -> JobQueue:
    return JobQueue(
        async_client(url, 2.0),
        Keys(prefix),
        queue_max=queue_max,
        retry_after_s=3,
        job_ttl_s=60,
        heartbeat_ttl_s=5,
        **kwargs,
    )
