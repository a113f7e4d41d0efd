"""Helpers of the reliability suite: clients that record what they saw, a worker supervisor,
queue inspection, and the figures each test reports (RELIABILITY.md quotes them)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from app.launch.embedded_redis import server_argv
from app.queue.fair import parked
from app.queue.keys import Keys
from app.queue.wire import Event, decode_event
from tests.support.servers import REPO, Workers

FIGURES_ENV = "BARK_FIGURES_OUT"  # a JSONL path: where figures go, besides stdout (pytest -s)


def new_prefix(name: str) -> str:
    """A fresh key prefix: tests on it see no other test's jobs, workers or voices."""
    return f"{name}{uuid.uuid4().hex[:6]}"


def record(test: str, **figures: Any) -> None:
    """Report a figure: printed (visible with -s or on failure) and appended to $BARK_FIGURES_OUT."""
    line = json.dumps({"test": test, **figures}, default=str)
    print(f"FIGURES {line}")
    out = os.environ.get(FIGURES_ENV)
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def sentences(n: int, tag: str = "") -> str:
    """Text of about n text chunks (bark_core packs ~200 characters per chunk)."""
    return " ".join(
        f"This is sentence number {i}{tag}, which is long enough to fill a chunk of text by itself."
        for i in range(2 * n)
    )


# --- workers ----------------------------------------------------------------------------


def spawn_worker(pool: Workers) -> subprocess.Popen[bytes]:
    """Start one more worker without waiting for it to load (as a supervisor restarts one)."""
    log = open(pool.log_dir / f"worker-{len(pool.procs)}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.worker.main"],
        env=pool.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    pool.procs.append(proc)
    return proc


class Restarter(threading.Thread):
    """Keeps `n` workers of a pool running, restarting any that die (bark-serve's WorkerPool
    does the same for embedded workers). Bounded: at most `max_restarts`."""

    def __init__(self, pool: Workers, n: int, max_restarts: int = 20) -> None:
        super().__init__(daemon=True)
        self.pool, self.n, self.max_restarts = pool, n, max_restarts
        self.restarts = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.2):
            while len(self.pool.alive()) < self.n and self.restarts < self.max_restarts:
                spawn_worker(self.pool)
                self.restarts += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


# --- queue inspection ---------------------------------------------------------------------


def out_events(client: redis.Redis, keys: Keys, job_id: str) -> list[tuple[float, Event]]:
    """A job's output stream as the workers wrote it: (epoch seconds of the entry, event)."""
    entries: Any = client.xrange(keys.out(job_id))
    return [(int(eid.split(b"-")[0]) / 1000, decode_event(fields)) for eid, fields in entries]


def waiting(client: redis.Redis, keys: Keys) -> int:
    """Jobs queued and not yet handed to a worker (what the 429 bound applies to): those
    parked in the fair-share backlog wait too."""
    try:
        pending: Any = client.xpending(keys.jobs, keys.group)
        held = int(pending["pending"]) - parked(pending)
    except redis.ResponseError:
        held = 0
    return int(client.xlen(keys.jobs)) - held  # type: ignore[arg-type]


def settled(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """What should be zero once every job has ended: outstanding and held entries."""
    try:
        held = int(client.xpending(keys.jobs, keys.group)["pending"])  # type: ignore[index]
    except redis.ResponseError:
        held = 0
    return {"outstanding": int(client.xlen(keys.jobs)), "held": held}  # type: ignore[arg-type]


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# --- a Redis server that can be killed and brought back at the same address ---------------


class RestartableRedis:
    """redis-server (the embedded binary) with AOF on, as bark-serve runs it, on a fixed unix
    socket, so clients keep their URL across a SIGKILL and a restart."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.socket = data_dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 10.0) -> float:
        """Start and wait until it answers (AOF loaded); returns the monotonic time it did."""
        argv = server_argv(self.socket, self.data_dir)
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return time.monotonic()
            except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
                time.sleep(0.02)
        raise RuntimeError("redis did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
