"""The consume loop: reclaim or take up to `batch_size` jobs, admit them, run them as a batch."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from ..core.errors import Cancelled, DeadlineExceeded, GenerationFailed
from ..queue.connection import BLOCK_MS, REDIS_DOWN
from ..queue.consumer import Consumer, Delivery
from ..queue.registry import Heartbeat
from .active import ActiveJobs
from .background import Background
from .batch import BatchRunner, MoreJobs, failed

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        consumer: Consumer,
        runner: BatchRunner,
        heartbeat: Heartbeat,
        active: ActiveJobs,
        *,
        batch_size: int,
        max_deliveries: int,
        heartbeat_interval_s: float,
        claim_idle_s: float,
    ) -> None:
        self.consumer = consumer
        self.runner = runner
        self.heartbeat = heartbeat
        self.active = active
        self.batch_size = batch_size
        self.max_deliveries = max_deliveries
        self.reclaim_every_s = max(0.2, claim_idle_s / 4)
        self.background = Background(consumer, heartbeat, active, heartbeat_interval_s=heartbeat_interval_s)
        self.stopping = threading.Event()
        self.jobs_done = 0
        # While a batch runs, jobs join it; but a batch that never ends would never let this
        # worker reclaim a dead worker's jobs. So joining stops, for the rest of the batch, once
        # a reclaim check finds such a job: the batch drains and the loop reclaims it.
        self._joining_closed = False
        self._next_join_check = 0.0

    def stop(self) -> None:
        """Finish the batch in hand, take no more, return from run()."""
        self.stopping.set()

    def run(self) -> None:
        self.consumer.ensure_group()
        self.heartbeat.update(state="idle")
        self.background.start()
        next_reclaim = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    batch: list[Delivery] = []
                    if time.monotonic() >= next_reclaim:
                        next_reclaim = time.monotonic() + self.reclaim_every_s
                        # One at a time, run alone: a re-delivered job may be the one that
                        # killed its last worker, and must not take healthy jobs down with
                        # it again (each crash brings them closer to the dead letter).
                        batch = self.consumer.reclaim(1)
                    alone = bool(batch)
                    if not batch:
                        batch = self._take_new()
                    admitted = self._admit(batch)
                    if admitted:
                        self._run(admitted, more=None if alone else self._more)
                except REDIS_DOWN as exc:
                    log.warning("redis unavailable: %s; retrying", exc)
                    self.stopping.wait(1.0)
        finally:
            self.background.stop()
            self.heartbeat.remove()
            log.info("worker stopped", extra={"jobs_done": self.jobs_done})

    def _run(self, admitted: list[Delivery], more: MoreJobs | None) -> None:
        self.heartbeat.update(state="busy", jobs=[d.job.id for d in admitted if d.job])
        self._joining_closed = False
        self._next_join_check = time.monotonic() + self.reclaim_every_s
        ran = len(admitted)
        try:
            ran = self.runner.run(admitted, more, max_rows=self.batch_size)
        finally:
            self.jobs_done += ran
            self.heartbeat.update(state="idle", jobs=[], jobs_done=self.jobs_done)

    def _more(self, free: int) -> list[Delivery]:
        """New jobs that join the running batch at its next stage (none while stopping).

        Without this a job arriving a millisecond after a batch started waited for the whole
        batch; now it catches up with it (bark_core.scheduler)."""
        if self.stopping.is_set() or self._joining_closed:
            return []
        try:
            if time.monotonic() >= self._next_join_check:
                self._next_join_check = time.monotonic() + self.reclaim_every_s
                self._joining_closed = self.consumer.has_reclaimable()
                if self._joining_closed:
                    log.info("a dead worker's job waits: no more joins until this batch ends")
                    return []
            joined = self._admit(self.consumer.take(free, self.active.running_by_owner()))
        except REDIS_DOWN:
            return []  # the batch in hand goes on; the outage surfaces when it writes
        if joined:
            self.heartbeat.update(jobs=self.active.ids() + [d.job.id for d in joined if d.job])
        return joined

    def _take_new(self) -> list[Delivery]:
        """A new batch: the waiting jobs of the fewest keys' rows first (Consumer.take); with
        none waiting, block for the next to arrive (the oldest, so FIFO is fair here), then
        fill the batch fairly around it."""
        batch = self.consumer.take(self.batch_size, {})
        if batch:
            return batch
        batch = self.consumer.read(1, BLOCK_MS)
        if batch and self.batch_size > 1:
            owners = Counter(d.job.owner for d in batch if d.job)
            batch += self.consumer.take(self.batch_size - 1, owners)
        return batch

    def _admit(self, batch: list[Delivery]) -> list[Delivery]:
        """Settle what must not run (garbage, poison, cancelled, expired); return the rest."""
        if not batch:
            return []
        cancelled = self.consumer.cancelled([d.job.id for d in batch if d.job])
        admitted = []
        for d in batch:
            if d.job is None:
                self.consumer.finish(d, failed(GenerationFailed("unreadable job entry")))
            elif d.deliveries > self.max_deliveries:
                log.error("dead-lettering job after %d deliveries", d.deliveries, extra={"job_id": d.job.id})
                self.consumer.dead_letter(
                    d, f"job was delivered {d.deliveries} times; its workers kept dying"
                )
            elif d.job.id in cancelled:
                self.consumer.finish(d, failed(Cancelled("cancelled before it started")))
            elif time.time() > d.job.deadline:
                self.consumer.finish(d, failed(DeadlineExceeded("deadline passed in queue")))
            else:
                admitted.append(d)
        return admitted
