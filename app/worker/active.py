"""The jobs a worker is running now, shared by its main thread (the pipeline) and its
background thread (cancel flags, claims, heartbeat)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from ..queue.consumer import Delivery


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

    def ids(self) -> list[str]:
        return [a.job_id for a in self.snapshot()]

    def running_by_owner(self) -> Counter[str]:
        """Jobs not yet settled per submitting key (Job.owner): what `Consumer.take` evens out.
        A job stays here until its batch ends, so the settled ones are left out."""
        return Counter(
            a.delivery.job.owner for a in self.snapshot() if a.delivery.job and not a.delivery.settled
        )
