"""The worker's background threads: heartbeat, claim keep-alive and cancel-flag polling while
it runs jobs; a plain heartbeat while the model loads.

The pipeline runs in the main thread and only asks `should_cancel()` between decode steps;
answering from memory (set here from Redis every `tick`) keeps that call free of I/O.
"""

from __future__ import annotations

import logging
import threading
import time

from ..queue.connection import REDIS_DOWN
from ..queue.consumer import Consumer
from ..queue.registry import Heartbeat
from .active import ActiveJobs

log = logging.getLogger(__name__)


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
