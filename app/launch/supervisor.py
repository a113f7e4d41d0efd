"""Local worker processes for `bark-serve`: start N, restart any that die, stop them all.

A worker that exits CONFIG_ERROR could not load its model with these settings, and never
will: it is not restarted, and `failed` tells bark-serve to stop (it said why in its log).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

from ..core.startup import CONFIG_ERROR
from .processes import child_env, spawn, stop

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1, 2, 5, 10, 30)
WORKER_ARGV = (sys.executable, "-m", "app.worker.main")


class WorkerPool:
    def __init__(
        self, n: int, env: dict[str, str], grace_s: float, argv: tuple[str, ...] = WORKER_ARGV
    ) -> None:
        self.n = n
        self.argv = argv
        self.failed = threading.Event()  # a worker exited CONFIG_ERROR
        self.env = child_env(**env)
        self.grace_s = grace_s
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self.failures = [0] * n
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._monitor = threading.Thread(target=self._watch, name="worker-pool", daemon=True)

    def _start(self, i: int) -> None:
        self.procs[i] = spawn(self.argv, env=self.env)
        log.info("started worker %d (pid %d)", i, self.procs[i].pid)  # type: ignore[union-attr]

    def start(self) -> None:
        with self._lock:
            for i in range(self.n):
                self._start(i)
        self._monitor.start()

    def _watch(self) -> None:
        restart_at: dict[int, float] = {}
        while not self._stopping.wait(0.5):
            with self._lock:
                if self._stopping.is_set():
                    return
                for i, proc in enumerate(self.procs):
                    if proc is None or proc.poll() is None:
                        continue
                    if proc.returncode == CONFIG_ERROR:
                        self._give_up(i, proc)
                        continue
                    if i not in restart_at:
                        delay = RESTART_BACKOFF_S[min(self.failures[i], len(RESTART_BACKOFF_S) - 1)]
                        log.error(
                            "worker %d (pid %d) exited with %s; restarting in %d s",
                            i,
                            proc.pid,
                            proc.returncode,
                            delay,
                        )
                        self.failures[i] += 1
                        restart_at[i] = time.monotonic() + delay
                    elif time.monotonic() >= restart_at[i]:
                        del restart_at[i]
                        self._start(i)

    def _give_up(self, i: int, proc: subprocess.Popen[bytes]) -> None:
        self.procs[i] = None
        if not self.failed.is_set():
            log.error(
                "worker %d (pid %d) cannot start with this configuration (its error is above); "
                "stopping bark-serve",
                i,
                proc.pid,
            )
        self.failed.set()

    def stop(self) -> None:
        """SIGTERM all at once (each finishes its job in hand), then reap them."""
        self._stopping.set()
        with self._lock:
            procs = [p for p in self.procs if p is not None]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                stop(proc, f"worker pid {proc.pid}", self.grace_s, signalled=True)
        if self._monitor.is_alive():
            self._monitor.join(timeout=2)
