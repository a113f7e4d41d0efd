"""The worker's side of the queue (sync redis-py): read, reclaim, keep claims fresh, emit, ack.

At-least-once: an entry stays pending (owned by this consumer) until its terminal event is
written, in the same MULTI as the XACK. A worker that dies leaves its entries pending; once
they have been idle for `claim_idle_ms` a live worker reclaims them. While a job runs,
`touch` re-claims it to ourselves (XCLAIM JUSTID: resets the idle time without counting a
delivery), so a long job is not stolen. `take` chooses among the waiting jobs by key (fair.py);
entries parked in the backlog for it are pending too, but belong to no worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import ResponseError

from ..core.errors import GenerationFailed
from .connection import ensure_group
from .fair import RECLAIM_LUA, TAKE_LUA, as_fields
from .keys import BACKLOG, Keys
from .keys import generation as generation_key
from .keys import lease as lease_key
from .keys import record as record_key
from .wire import (
    Chunk,
    ChunkGeneration,
    Done,
    Event,
    Failed,
    Job,
    JobRecord,
    Started,
    decode_event,
    encode_event,
)

# A job's record is updated only while it exists (a job queued by an older API has none,
# and an expired one must not come back half-written).
# KEYS: record; ARGV: chunks_done (or "" to leave it), then field/value pairs
_PROGRESS_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] ~= '' then
  local done = tonumber(redis.call('HGET', KEYS[1], 'chunks_done') or '0')
  if tonumber(ARGV[1]) > done then redis.call('HSET', KEYS[1], 'chunks_done', ARGV[1]) end
end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
return 1
"""
# The terminal fields, and the lifetimes that start when a job ends: its output stream and
# record live the record's ttl_s (then the record stays, as a tombstone that says "expired",
# for ARGV[3] seconds more); its key no longer counts it.
# KEYS: record, output stream, kept generations; ARGV: job id, the stream's ttl without a record, tombstone s,
# then field/value pairs
_FINISH_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
  return 0
end
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl_s') or ARGV[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ttl + tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
local active = redis.call('HGET', KEYS[1], 'active_key')
if active and active ~= '' then redis.call('ZREM', active, ARGV[1]) end
return 1
"""
TOMBSTONE_S = 86_400  # how long "expired" is told apart from "never existed"
_PAGE = 32  # output stream entries read at a time when a reclaimed job's is read back


@dataclass
class Written:
    """What earlier deliveries of a job wrote to its output stream: each chunk's samples by
    seq, the job's chunk count (None: no chunk yet), the kept generations by seq and each
    chunk's text as its worker planned it."""

    samples: dict[int, int]
    n_chunks: int | None
    generations: dict[int, ChunkGeneration]
    texts: dict[int, str] = field(default_factory=dict)

    @property
    def next_seq(self) -> int:
        """The first chunk the client does not have (chunks are written in order)."""
        seq = 0
        while seq in self.samples:
            seq += 1
        return seq


log = logging.getLogger(__name__)


@dataclass
class Delivery:
    entry_id: bytes
    job: Job | None  # None: an entry we cannot parse
    deliveries: int  # how many times the group has handed this entry out, this one included
    settled: bool = False  # its terminal event is written and the entry acked (finish)


class Consumer:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        name: str,
        *,
        claim_idle_ms: int,
        job_ttl_s: int,
        stream_ttl_s: int,
        fair_window: int = 0,
    ) -> None:
        self.redis = client
        self.keys = keys
        self.name = name
        self.claim_idle_ms = claim_idle_ms
        self.job_ttl_s = job_ttl_s
        self.stream_ttl_s = stream_ttl_s  # bound on a running job's output stream
        self.fair_window = fair_window  # waiting jobs `take` chooses among (at most: FIFO)
        self._progress = client.register_script(_PROGRESS_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._take = client.register_script(TAKE_LUA)
        self._reclaim = client.register_script(RECLAIM_LUA)

    def ensure_group(self) -> None:
        ensure_group(self.redis, self.keys)

    @staticmethod
    def _parse(entry_id: bytes, fields: dict[bytes, bytes] | None, deliveries: int) -> Delivery:
        try:
            job = Job.from_fields(fields) if fields else None
        except (KeyError, ValueError, TypeError):
            log.exception("unparseable job entry %s", entry_id)
            job = None
        return Delivery(entry_id, job, deliveries)

    def read(self, count: int, block_ms: int | None) -> list[Delivery]:
        """New entries for this consumer (first delivery)."""
        try:
            reply: Any = self.redis.xreadgroup(
                self.keys.group, self.name, {self.keys.jobs: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()
            return []
        if not reply:
            return []
        return [self._parse(eid, fields, 1) for eid, fields in reply[0][1]]

    def take(self, count: int, running: Mapping[str, int]) -> list[Delivery]:
        """Up to `count` waiting jobs, those of the keys with the fewest rows first: `running`
        is this worker's rows per key (Job.owner). Never blocks; [] when nothing waits."""
        if count <= 0:
            return []
        args: list[str | int] = [self.keys.group, BACKLOG, self.name, count, self.fair_window]
        args += [x for owner, rows in running.items() for x in (owner, rows)]
        reply = self._scripted(self._take, args)
        return [self._parse(eid, as_fields(flat), int(n)) for eid, flat, n in reply]

    def reclaim(self, count: int) -> list[Delivery]:
        """Entries other consumers left idle too long (crashed workers); the backlog's wait
        by design and are not taken here."""
        reply = self._scripted(self._reclaim, [*self._reclaim_args(), count])
        out = [self._parse(eid, as_fields(flat), int(n)) for eid, flat, n in reply]
        if out:
            log.warning("reclaimed %d job(s) from dead consumers", len(out))
        return out

    def has_reclaimable(self) -> bool:
        """Whether some entry has been idle long enough to be reclaimed (its worker died).
        Our own running entries are touched well within the bound, so they never count."""
        return bool(self._scripted(self._reclaim, [*self._reclaim_args(), 0]))

    def _reclaim_args(self) -> list[str | int]:
        return [self.keys.group, BACKLOG, self.name, self.claim_idle_ms]

    def _scripted(self, script: Any, args: list[str | int]) -> Any:
        try:
            return script(keys=[self.keys.jobs], args=args)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()
            return []

    def touch(self, entry_ids: list[int | bytes | str | memoryview]) -> None:
        """Reset the idle time of entries we are working on, without counting a delivery."""
        if entry_ids:
            self.redis.xclaim(self.keys.jobs, self.keys.group, self.name, 0, list(entry_ids), justid=True)

    def emit(self, job_id: str, event: Event, generation: ChunkGeneration | None = None) -> None:
        """Append an event; a chunk's `generation` is kept beside it, for resuming."""
        key = self.keys.out(job_id)
        # MULTI: a chunk is never written without its generation (a reclaiming worker resumes
        # after the last chunk written, with that chunk's generation as its history)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, encode_event(event))  # type: ignore[arg-type]
            pipe.expire(key, self.stream_ttl_s)
            if generation is not None:
                gen = generation_key(self.keys, job_id)
                pipe.hset(gen, mapping=generation.to_fields())  # type: ignore[arg-type]
                pipe.expire(gen, self.stream_ttl_s)
            progress = _progress_args(event)
            if progress is not None:
                self._progress(keys=[record_key(self.keys, job_id)], args=progress, client=pipe)
            pipe.execute()

    def written(self, job_id: str) -> Written:
        """Read back a reclaimed job's output so far, a page at a time (it may be long)."""
        key, samples, texts, n_chunks, start = self.keys.out(job_id), {}, {}, None, "-"
        while True:
            page: Any = self.redis.xrange(key, start, "+", count=_PAGE)
            for _, fields in page:
                event = decode_event(fields)
                if isinstance(event, Chunk):
                    samples[event.seq], n_chunks = len(event.pcm) // 2, event.n_chunks  # s16: 2 bytes
                    texts[event.seq] = event.text
            if len(page) < _PAGE:
                break
            start = "(" + page[-1][0].decode()
        raw: Any = self.redis.hgetall(generation_key(self.keys, job_id))
        return Written(samples, n_chunks, ChunkGeneration.all_from_hash(raw), texts)

    def finish(self, delivery: Delivery, event: Event) -> None:
        """Write the terminal event and settle the entry, atomically (MULTI/EXEC)."""
        with self.redis.pipeline(transaction=True) as pipe:
            if delivery.job is not None:
                key = self.keys.out(delivery.job.id)
                pipe.xadd(key, encode_event(event))  # type: ignore[arg-type]
                pipe.expire(key, self.job_ttl_s)
                if isinstance(event, Done | Failed):
                    pairs = [x for kv in JobRecord.finished(event, time.time()).items() for x in kv]
                    args: list[str | int] = [delivery.job.id, self.job_ttl_s, TOMBSTONE_S, *pairs]
                    record = record_key(self.keys, delivery.job.id)
                    gen = generation_key(self.keys, delivery.job.id)
                    self._finish(keys=[record, key, gen], args=args, client=pipe)
            pipe.xack(self.keys.jobs, self.keys.group, delivery.entry_id)
            pipe.xdel(self.keys.jobs, delivery.entry_id)
            pipe.execute()
        delivery.settled = True

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park a job that keeps killing workers, and tell its client."""
        job = delivery.job
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.dead,
                {
                    "job": job.to_fields()["job"] if job else b"",
                    "reason": reason,
                    "deliveries": str(delivery.deliveries),
                },
                maxlen=10_000,
                approximate=True,
            )
            pipe.execute()
        self.finish(delivery, Failed(GenerationFailed.type, reason))

    def cancelled(self, job_ids: list[str]) -> set[str]:
        """Jobs to drop: a client cancelled them, or an attended job's lease ran out (its
        client left and nobody resumed it within the grace period)."""
        if not job_ids:
            return set()
        flags = self.redis.mget([self.keys.cancel(j) for j in job_ids])
        out = {j for j, flag in zip(job_ids, flags, strict=True) if flag}
        return out | self._unattended([j for j in job_ids if j not in out])

    def _unattended(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        with self.redis.pipeline(transaction=False) as pipe:
            for j in job_ids:
                pipe.hget(record_key(self.keys, j), "attended")
                pipe.exists(lease_key(self.keys, j))
            replies = pipe.execute()
        lapsed = {
            j
            for j, attended, leased in zip(job_ids, replies[::2], replies[1::2], strict=True)
            if attended == b"1" and not leased
        }
        for j in lapsed:
            log.info("nobody resumed the job within its grace period", extra={"job_id": j})
            self.redis.set(self.keys.cancel(j), b"1", ex=self.job_ttl_s + 3600)
        return lapsed


def _progress_args(event: Event) -> list[str] | None:
    if isinstance(event, Started):
        return [
            "",
            *(x for kv in JobRecord.started(event.worker, event.attempt, time.time()).items() for x in kv),
        ]
    if isinstance(event, Chunk):
        fields = JobRecord.chunk_written(event.seq, len(event.pcm) // 2, event.n_chunks)  # s16: 2 bytes
        return [str(event.seq + 1), *(x for kv in fields.items() for x in kv)]
    return None
