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
from .fair import parked
from .keys import BACKLOG, Keys
from .keys import lease as lease_key
from .keys import record as record_key
from .registry import live_workers, recently_live
from .wire import Chunk, Event, Job, JobRecord, Started, WorkerInfo, decode_event, is_terminal

# Atomic admission, in one script so that concurrent duplicates and floods cannot race:
#   1. an Idempotency-Key already used: {"dup", "job_id fingerprint"} (nothing queued);
#   2. the key's own unfinished jobs at its limit: {"over", count};
#   3. too many waiting (entries no worker holds: XLEN counts outstanding jobs, finished ones
#      are XDELed; XPENDING the held ones, less those parked in the backlog, which wait too):
#      {"full", waiting};
#   4. else XADD the job (its owner beside it, for the worker's take script), write its status
#      record, count it against its key and remember its Idempotency-Key: {"ok", position}.
# KEYS: jobs stream, record, idempotency key, owner's active set, lease ("" for none of each)
# ARGV: group, queue_max, job json, idem value, idem ttl, limit, job id, deadline, now,
#       record ttl, lease ms, owner, backlog consumer, then the record's field/value pairs
_SUBMIT_LUA = """
if KEYS[3] ~= '' then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {'dup', seen} end
end
local limit = tonumber(ARGV[6])
if KEYS[4] ~= '' and limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[9])
  local mine = redis.call('ZCARD', KEYS[4])
  if mine >= limit then return {'over', tostring(mine)} end
end
local outstanding = redis.call('XLEN', KEYS[1])
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
local held = pending[1]
for _, c in ipairs(pending[4] or {}) do
  if c[1] == ARGV[13] then held = held - tonumber(c[2]) end
end
local waiting = outstanding - held
if waiting >= tonumber(ARGV[2]) then return {'full', tostring(waiting)} end
redis.call('XADD', KEYS[1], '*', 'job', ARGV[3], 'owner', ARGV[12])
if KEYS[2] ~= '' then
  redis.call('HSET', KEYS[2], unpack(ARGV, 14))
  redis.call('EXPIRE', KEYS[2], ARGV[10])
end
if KEYS[4] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
  redis.call('EXPIRE', KEYS[4], ARGV[10])
end
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5]) end
if KEYS[5] ~= '' then redis.call('SET', KEYS[5], '1', 'PX', ARGV[11]) end
return {'ok', tostring(waiting)}
"""


@dataclass(frozen=True)
class Admission:
    """What is written with a job besides its queue entry (all optional)."""

    record: JobRecord | None = None
    idempotency_key: str = ""  # keys.idempotency(...), "" for none
    fingerprint: str = ""  # of the request: the same key with another body is refused
    owner_limit: int = 0  # most unfinished jobs of record.owner (0: no limit)
    record_ttl_s: int = 3600  # the record's lifetime before the job ends (then: ttl + tombstone)
    lease_ms: int = 0  # attended jobs: how long the job lives unread (the grace period)


@dataclass(frozen=True)
class Admitted:
    job_id: str  # the queued job, or the earlier one an Idempotency-Key named
    position: int  # jobs ahead of it (0 for a duplicate)
    duplicate_of: str | None = None  # the earlier request's fingerprint, for a duplicate


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
        return (await self.admit(job, Admission())).position

    async def admit(self, job: Job, admission: Admission) -> Admitted:
        """Queue a job with its record, key limit and Idempotency-Key, atomically.
        QueueFull (the queue's or the key's limit) / Unavailable."""
        try:
            if not await self._live_worker_or_wait():
                raise self.unavailable(self.no_worker)
            kind, value = await self._run_submit(job, admission)
        except REDIS_DOWN as exc:
            raise self.unavailable(f"queue unavailable: {exc.__class__.__name__}") from exc
        if kind == "full":
            raise QueueFull(
                f"queue is full ({value} jobs waiting); retry later", retry_after_s=self.retry_after_s
            )
        if kind == "over":
            raise QueueFull(
                f"this API key has {value} jobs queued or running, its limit; retry once one ends",
                retry_after_s=self.retry_after_s,
            )
        if kind == "dup":
            job_id, _, fingerprint = value.partition(" ")
            return Admitted(job_id, 0, duplicate_of=fingerprint)
        return Admitted(job.id, int(value))

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

    async def _run_submit(self, job: Job, a: Admission) -> tuple[str, str]:
        record = a.record
        active = record.active_key if record is not None else ""
        lease = lease_key(self.keys, job.id) if a.lease_ms else ""
        keys = [
            self.keys.jobs,
            record_key(self.keys, job.id) if record else "",
            a.idempotency_key,
            active,
            lease,
        ]
        pairs = [item for kv in (record.to_hash().items() if record else ()) for item in kv]
        args: list[str | int | float] = [
            self.keys.group,
            self.queue_max,
            job.to_fields()["job"],
            f"{job.id} {a.fingerprint}",
            a.record_ttl_s,
            a.owner_limit,
            job.id,
            job.deadline,
            time.time(),
            a.record_ttl_s,
            a.lease_ms,
            job.owner,
            BACKLOG,
            *pairs,
        ]
        try:
            reply = await self._submit(keys=keys, args=args)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()  # Redis restarted without persistence
            reply = await self._submit(keys=keys, args=args)
        kind, value = (part.decode() if isinstance(part, bytes) else str(part) for part in reply)
        return kind, value

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
            dead = int(await self.redis.xlen(self.keys.dead))
        except ResponseError:  # no group yet
            return QueueStats(0, 0, 0)
        # held by workers: pending entries less those parked in the backlog (read, not started)
        held = int(pending["pending"]) - parked(pending)
        return QueueStats(waiting=max(0, outstanding - held), running=held, dead=dead)

    def follow(
        self,
        job_id: str,
        deadline: float,
        client_gone: ClientGone | None = None,
        *,
        from_seq: int = 0,
        lease_ms: int = 0,
    ) -> AsyncIterator[Event]:
        """The job's events in order, each chunk `seq` at most once, ending at its terminal.

        `client_gone` is polled between reads; when it says so, Cancelled is raised (the
        caller then cancels the job). A job reclaimed after a worker crash resumes after its
        last written chunk; where it starts over instead (no kept generation, or a failed batch
        retried row by row) chunks already forwarded are skipped, not repeated. Chunks below
        `from_seq` are skipped too (a resumed reader has them). With `lease_ms`, the job's
        lease is renewed on every read: an attended job lives while someone reads it."""
        follower = _Follower(self, job_id, deadline, client_gone)
        follower.next_seq = from_seq
        follower.lease_ms = lease_ms
        return follower.events()

    # --- job records (issue 17) ---------------------------------------------------------------

    async def record(self, job_id: str) -> JobRecord | None:
        try:
            raw: Any = await self.redis.hgetall(record_key(self.keys, job_id))
        except REDIS_DOWN as exc:
            raise self.unavailable("queue unavailable") from exc
        return JobRecord.from_hash(raw) if raw else None

    async def renew_lease(self, job_id: str, lease_ms: int) -> None:
        """Someone reads the job: it lives `lease_ms` more (restarted on each call)."""
        await self.redis.set(lease_key(self.keys, job_id), b"1", px=lease_ms)


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
        self.job_id = job_id
        self.lease_ms = 0

    async def events(self) -> AsyncIterator[Event]:
        while True:
            if self.client_gone is not None and await self.client_gone():
                raise Cancelled("client went away")
            if self.lease_ms:
                try:
                    await self.queue.renew_lease(self.job_id, self.lease_ms)
                except REDIS_DOWN as exc:
                    raise self.queue.unavailable("queue connection lost") from exc
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
