"""The worker's side of the queue (sync redis-py): read, reclaim, keep claims fresh, emit, ack.

At-least-once: an entry stays pending (owned by this consumer) until its terminal event is
written, in the same MULTI as the XACK. A worker that dies leaves its entries pending; once
they have been idle for `claim_idle_ms` a live worker XAUTOCLAIMs them. While a job runs,
`touch` re-claims it to ourselves (XCLAIM JUSTID: resets the idle time without counting a
delivery), so a long job is not stolen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import ResponseError

from ..core.errors import GenerationFailed
from .connection import ensure_group
from .keys import Keys
from .wire import Event, Failed, Job, encode_event

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    entry_id: bytes
    job: Job | None  # None: an entry we cannot parse
    deliveries: int  # how many times the group has handed this entry out, this one included


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
    ) -> None:
        self.redis = client
        self.keys = keys
        self.name = name
        self.claim_idle_ms = claim_idle_ms
        self.job_ttl_s = job_ttl_s
        self.stream_ttl_s = stream_ttl_s  # bound on a running job's output stream

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

    def reclaim(self, count: int) -> list[Delivery]:
        """Entries other consumers left idle too long (crashed workers)."""
        reply: Any = self.redis.xautoclaim(
            self.keys.jobs, self.keys.group, self.name, self.claim_idle_ms, "0-0", count=count
        )
        out = []
        for entry_id, fields in reply[1]:
            if entry_id is None:
                continue
            if fields is None:  # deleted while pending: nothing to run, just settle it
                self.redis.xack(self.keys.jobs, self.keys.group, entry_id)
                continue
            out.append(self._parse(entry_id, fields, self.deliveries_of(entry_id)))
        if out:
            log.warning("reclaimed %d job(s) from dead consumers", len(out))
        return out

    def has_reclaimable(self) -> bool:
        """Whether some entry has been idle long enough to be reclaimed (its worker died).
        Our own running entries are touched well within the bound, so they never count."""
        idle: Any = self.redis.xpending_range(
            self.keys.jobs, self.keys.group, min="-", max="+", count=1, idle=self.claim_idle_ms
        )
        return bool(idle)

    def deliveries_of(self, entry_id: bytes) -> int:
        info: Any = self.redis.xpending_range(
            self.keys.jobs, self.keys.group, min=entry_id, max=entry_id, count=1
        )
        return int(info[0]["times_delivered"]) if info else 1

    def touch(self, entry_ids: list[int | bytes | str | memoryview]) -> None:
        """Reset the idle time of entries we are working on, without counting a delivery."""
        if entry_ids:
            self.redis.xclaim(self.keys.jobs, self.keys.group, self.name, 0, list(entry_ids), justid=True)

    def emit(self, job_id: str, event: Event) -> None:
        key = self.keys.out(job_id)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, encode_event(event))  # type: ignore[arg-type]
            pipe.expire(key, self.stream_ttl_s)
            pipe.execute()

    def finish(self, delivery: Delivery, event: Event) -> None:
        """Write the terminal event and settle the entry, atomically (MULTI/EXEC)."""
        with self.redis.pipeline(transaction=True) as pipe:
            if delivery.job is not None:
                key = self.keys.out(delivery.job.id)
                pipe.xadd(key, encode_event(event))  # type: ignore[arg-type]
                pipe.expire(key, self.job_ttl_s)
            pipe.xack(self.keys.jobs, self.keys.group, delivery.entry_id)
            pipe.xdel(self.keys.jobs, delivery.entry_id)
            pipe.execute()

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
        if not job_ids:
            return set()
        flags = self.redis.mget([self.keys.cancel(j) for j in job_ids])
        return {j for j, flag in zip(job_ids, flags, strict=True) if flag}
