"""The API's side of the queue (asyncio): submit with backpressure, follow, cancel, inspect.

Failures are domain errors (QueueFull, Unavailable, DeadlineExceeded, Cancelled) carrying
`retry_after_s` where a retry can help; app/api/errors.py turns them into HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..core.errors import Cancelled, DeadlineExceeded, QueueFull, Unavailable
from .connection import BLOCK_MS, REDIS_DOWN, ensure_group_async
from .keys import Keys
from .registry import live_workers, recently_live
from .wire import Chunk, Event, Job, Started, WorkerInfo, decode_event, is_terminal

# Atomic "add unless too many are waiting". Waiting = entries in the stream that no worker
# has been handed yet: XLEN counts outstanding jobs (finished ones are XDELed), XPENDING the
# ones a worker holds. Returns the position (jobs ahead), or -1 - waiting when full.
_SUBMIT_LUA = """
local outstanding = redis.call('XLEN', KEYS[1])
local held = redis.call('XPENDING', KEYS[1], ARGV[1])[1]
local waiting = outstanding - held
if waiting >= tonumber(ARGV[2]) then return -1 - waiting end
redis.call('XADD', KEYS[1], '*', 'job', ARGV[3])
return waiting
"""

MAX_UNSENT_CANCELS = 10_000  # bound on what an outage can make the API remember
NO_WORKER = "no live worker; start one with `bark-worker`"
NO_WORKER_YET = "no live worker yet: bark-serve's workers are starting (loading the model); retry"
ClientGone = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class QueueStats:
    waiting: int
    running: int
    dead: int


class JobQueue:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        queue_max: int,
        retry_after_s: int,
        job_ttl_s: int,
        heartbeat_ttl_s: float,
        heartbeat_interval_s: float = 0.0,
        local_workers: bool = False,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.queue_max = queue_max
        self.retry_after_s = retry_after_s
        self.job_ttl_s = job_ttl_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        # A request that finds no live worker right after they all lapsed (a Redis restart)
        # waits this long for one to beat again; bark-serve's own workers change the hint.
        self.worker_wait_s = heartbeat_interval_s
        self.no_worker = NO_WORKER_YET if local_workers else NO_WORKER
        self._last_live_at = 0.0  # time.time() the API last saw a live worker
        self._submit = redis.register_script(_SUBMIT_LUA)
        # Cancels Redis was down for: job id -> when it stops mattering (the job's deadline).
        # Without them a job whose client left during an outage runs for nobody afterwards.
        self._unsent_cancels: dict[str, float] = {}

    def unavailable(self, message: str) -> Unavailable:
        return Unavailable(message, retry_after_s=self.retry_after_s)

    async def ensure_group(self) -> None:
        await ensure_group_async(self.redis, self.keys)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except REDIS_DOWN:
            return False

    async def workers(self) -> list[WorkerInfo]:
        """Heartbeats of live workers (a dead worker's key has expired)."""
        return await live_workers(self.redis, self.keys, self.heartbeat_ttl_s)

    async def submit(self, job: Job) -> int:
        """Queue a job; returns how many jobs are ahead of it. QueueFull / Unavailable."""
        try:
            if not await self._live_worker_or_wait():
                raise self.unavailable(self.no_worker)
            position = await self._run_submit(job)
        except REDIS_DOWN as exc:
            raise self.unavailable(f"queue unavailable: {exc.__class__.__name__}") from exc
        if position < 0:
            raise QueueFull(
                f"queue is full ({-1 - position} jobs waiting); retry later", retry_after_s=self.retry_after_s
            )
        return position

    async def _live_worker_or_wait(self) -> bool:
        """A live worker now, or (when workers were registered within a TTL) within one
        heartbeat interval."""
        if await self.workers():
            self._last_live_at = time.time()
            return True
        recent = time.time() - self._last_live_at < self.heartbeat_ttl_s
        if self.worker_wait_s <= 0 or not (
            recent or await recently_live(self.redis, self.keys, self.heartbeat_ttl_s)
        ):
            return False
        deadline = time.monotonic() + self.worker_wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, self.worker_wait_s / 4))
            if await self.workers():
                self._last_live_at = time.time()
                return True
        return False

    async def _run_submit(self, job: Job) -> int:
        args: list[str | int] = [self.keys.group, self.queue_max, job.to_fields()["job"]]
        try:
            return int(await self._submit(keys=[self.keys.jobs], args=args))
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()  # Redis restarted without persistence
            return int(await self._submit(keys=[self.keys.jobs], args=args))

    async def cancel(self, job_id: str, until: float | None = None) -> None:
        """Raise the job's cancel flag; the worker drops it within one decode step.

        With Redis down the flag is kept and sent once Redis is back (`resend_cancels`), until
        `until` (the job's deadline, epoch seconds) passes."""
        try:
            await self.redis.set(self.keys.cancel(job_id), b"1", ex=self.job_ttl_s + 3600)
        except REDIS_DOWN:
            if len(self._unsent_cancels) < MAX_UNSENT_CANCELS:
                self._unsent_cancels[job_id] = until or time.time() + self.job_ttl_s

    async def resend_cancels(self, every_s: float = 1.0) -> None:
        """Runs for the app's lifetime: sends the cancels an outage held back."""
        while True:
            await asyncio.sleep(every_s)
            now = time.time()
            pending = {j: t for j, t in self._unsent_cancels.items() if t > now}
            if not pending:
                self._unsent_cancels.clear()
                continue
            with contextlib.suppress(*REDIS_DOWN):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for job_id in pending:
                        pipe.set(self.keys.cancel(job_id), b"1", ex=self.job_ttl_s + 3600)
                    await pipe.execute()
                for job_id in pending:
                    self._unsent_cancels.pop(job_id, None)

    async def stats(self) -> QueueStats:
        try:
            outstanding = int(await self.redis.xlen(self.keys.jobs))
            pending = await self.redis.xpending(self.keys.jobs, self.keys.group)
            held = int(pending["pending"])
            dead = int(await self.redis.xlen(self.keys.dead))
        except ResponseError:  # no group yet
            return QueueStats(0, 0, 0)
        return QueueStats(waiting=max(0, outstanding - held), running=held, dead=dead)

    def follow(
        self, job_id: str, deadline: float, client_gone: ClientGone | None = None
    ) -> AsyncIterator[Event]:
        """The job's events in order, each chunk `seq` at most once, ending at its terminal.

        `client_gone` is polled between reads; when it says so, Cancelled is raised (the
        caller then cancels the job). A job re-run after a worker crash starts again at seq 0
        with the same seed: chunks already forwarded are skipped, not repeated."""
        return _Follower(self, job_id, deadline, client_gone).events()


class _Follower:
    """One reader of one job's output stream."""

    def __init__(self, queue: JobQueue, job_id: str, deadline: float, client_gone: ClientGone | None) -> None:
        self.queue = queue
        self.key = queue.keys.out(job_id)
        self.deadline = deadline
        self.client_gone = client_gone
        self.last_id = b"0-0"
        self.next_seq = 0
        self.started = False
        self.last_worker_check = time.monotonic()

    async def events(self) -> AsyncIterator[Event]:
        while True:
            if self.client_gone is not None and await self.client_gone():
                raise Cancelled("client went away")
            entries = await self._read()
            for event in entries:
                if self._fresh(event):
                    yield event
                if is_terminal(event):
                    return
            if not entries:
                await self._check_workers()

    async def _read(self) -> list[Event]:
        left = self.deadline - time.time()
        if left <= 0:
            raise DeadlineExceeded("synthesis did not finish before the request deadline")
        block = max(1, min(BLOCK_MS, int(left * 1000)))
        try:
            reply: Any = await self.queue.redis.xread({self.key: self.last_id}, count=64, block=block)
        except REDIS_DOWN as exc:
            raise self.queue.unavailable("queue connection lost") from exc
        entries = reply[0][1] if reply else []
        if entries:
            self.last_id = entries[-1][0]
        return [decode_event(fields) for _, fields in entries]

    def _fresh(self, event: Event) -> bool:
        """False for what an earlier attempt of the job already sent."""
        if isinstance(event, Chunk):
            if event.seq < self.next_seq:
                return False
            self.next_seq = event.seq + 1
        elif isinstance(event, Started):
            if self.started:
                return False
            self.started = True
        return True

    async def _check_workers(self) -> None:
        """Nobody may ever pick the job up again: fail now rather than at the deadline."""
        if time.monotonic() - self.last_worker_check <= self.queue.heartbeat_ttl_s:
            return
        self.last_worker_check = time.monotonic()
        try:
            alive = await self.queue.workers()
        except REDIS_DOWN as exc:
            raise self.queue.unavailable("queue connection lost") from exc
        if not alive:
            raise self.queue.unavailable("no live worker left to run this job")
