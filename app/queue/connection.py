"""Redis clients with short timeouts and one retry (an outage answers 503, never a hang), and
the job stream's consumer group, which both sides make sure of."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

from .keys import Keys

# Blocking reads (XREAD/XREADGROUP BLOCK) wait at most this long, so the socket timeout
# (>= 2 s) always outlasts a healthy blocked call.
BLOCK_MS = 500


def _read_timeout(timeout_s: float) -> float:
    return max(timeout_s, BLOCK_MS / 1000 + 1.5)


def async_client(url: str, timeout_s: float) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        retry=AsyncRetry(NoBackoff(), 1),
        max_connections=4096,
        socket_timeout=_read_timeout(timeout_s),
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )


def sync_client(url: str, timeout_s: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 1),
        socket_timeout=_read_timeout(timeout_s),
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )


# What a dead or unreachable Redis raises, for `except` clauses on both sides.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)


def _group_exists(exc: ResponseError) -> bool:
    return "BUSYGROUP" in str(exc)


def ensure_group(client: redis.Redis, keys: Keys) -> None:
    """Create the job stream's consumer group (and the stream) unless it exists."""
    try:
        client.xgroup_create(keys.jobs, keys.group, id="0", mkstream=True)
    except ResponseError as exc:
        if not _group_exists(exc):
            raise


async def ensure_group_async(client: aioredis.Redis, keys: Keys) -> None:
    """`ensure_group` for the API's asyncio client."""
    try:
        await client.xgroup_create(keys.jobs, keys.group, id="0", mkstream=True)
    except ResponseError as exc:
        if not _group_exists(exc):
            raise
