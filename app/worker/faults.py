"""Test-only fault injection: a job's text asks the worker to fail, so the reliability suite
can make a poison job without patching code.

Honoured only when the worker runs with BARK_FAULT_INJECTION=true; otherwise `check` is a
no-op, so in production no request can trigger a fault, whatever its text. Markers:

  [[fault:crash]]   the worker SIGKILLs itself as it starts the job, on every delivery
                    (what an out-of-memory kill looks like): the job is dead-lettered after
                    max_deliveries
  [[fault:error]]   generation raises: the client gets a 500 generation_failed
  [[fault:device]]  generation raises what a broken CUDA context raises, on the first delivery
                    only: that worker exits, and a healthy one reclaims and finishes the job
"""

from __future__ import annotations

import logging
import os
import signal

from ..queue.consumer import Delivery
from ..queue.wire import Job

log = logging.getLogger(__name__)

CRASH = "[[fault:crash]]"
ERROR = "[[fault:error]]"
DEVICE = "[[fault:device]]"


class InjectedFault(RuntimeError):
    pass


class Faults:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            log.warning("FAULT INJECTION IS ON (BARK_FAULT_INJECTION): for tests only")

    def on_start(self, job: Job) -> None:
        """Called once the job's `started` event is written."""
        if self.enabled and CRASH in job.text:
            log.error("injected fault: crashing on job", extra={"job_id": job.id})
            os.kill(os.getpid(), signal.SIGKILL)

    def on_generate(self, delivery: Delivery) -> None:
        """Called as the batch holding the job starts generating."""
        job = delivery.job
        if not self.enabled or job is None:
            return
        if ERROR in job.text:
            raise InjectedFault("injected fault: generation error")
        if DEVICE in job.text and delivery.deliveries == 1:
            raise InjectedFault("CUDA error: device-side assert triggered (injected fault)")
