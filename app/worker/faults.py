"""Test-only fault injection: a job's text asks the worker to fail, so the reliability suite
can make a poison job without patching code.

Honoured only when the worker runs with BARK_FAULT_INJECTION=true; otherwise `check` is a
no-op, so in production no request can trigger a fault, whatever its text. Markers:

  [[fault:crash]]   the worker SIGKILLs itself as it starts the job, on every delivery
                    (what an out-of-memory kill looks like): the job is dead-lettered after
                    max_deliveries
  [[fault:error]]   generation raises: the client gets a 500 generation_failed
"""

from __future__ import annotations

import logging
import os
import signal

from ..queue.wire import Job

log = logging.getLogger(__name__)

CRASH = "[[fault:crash]]"
ERROR = "[[fault:error]]"


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

    def on_generate(self, job: Job) -> None:
        """Called as the batch holding the job starts generating."""
        if self.enabled and ERROR in job.text:
            raise InjectedFault("injected fault: generation error")
