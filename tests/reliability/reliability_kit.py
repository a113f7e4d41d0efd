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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from harness import REPO, Workers
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from app.embedded_redis import redis_binary
from app.queue.keys import Keys
from app.queue.messages import Event

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


# --- websocket client -------------------------------------------------------------------


@dataclass
class WsResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    frames: dict[int, bytes] = field(default_factory=dict)
    duplicates: int = 0  # chunk seqs received more than once
    close_code: int | None = None
    job_id: str | None = None
    queued_at: float | None = None  # when the server acknowledged the job (monotonic)
    ended_at: float | None = None

    @property
    def outcome(self) -> str:
        last = self.events[-1]["type"] if self.events else None
        if last == "done":
            return "done"
        if last == "error":
            return f"error {self.events[-1]['error']['code']}"
        return f"closed {self.close_code}"

    @property
    def pcm(self) -> bytes:
        return b"".join(self.frames[s] for s in sorted(self.frames))

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events if e["type"] == "chunk"]


def ws_job(ws_url: str, body: dict[str, Any], timeout: float = 120.0) -> WsResult:
    """One synthesis over the websocket, recording every event and frame; never raises on a
    server-side close (that is an outcome to check)."""
    result = WsResult()
    deadline = time.monotonic() + timeout
    seq: int | None = None
    try:
        with connect(f"{ws_url}/ws/synthesize", open_timeout=30) as ws:
            ws.send(json.dumps(body))
            while time.monotonic() < deadline:
                message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                if isinstance(message, bytes):
                    assert seq is not None, "binary frame before its chunk event"
                    if seq in result.frames:
                        result.duplicates += 1
                    result.frames[seq] = message
                    continue
                event = json.loads(message)
                result.events.append(event)
                if event["type"] == "queued":
                    result.job_id = event["job_id"]
                    result.queued_at = time.monotonic()
                elif event["type"] == "chunk":
                    seq = event["seq"]
                elif event["type"] in ("done", "error"):
                    break
            ws.recv(timeout=5)  # the server's close follows its terminal event
    except ConnectionClosed as exc:
        result.close_code = exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        result.close_code = -1  # ours: the server never ended it
    result.ended_at = time.monotonic()
    return result


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
    return [(int(eid.split(b"-")[0]) / 1000, Event.from_fields(fields)) for eid, fields in entries]


def waiting(client: redis.Redis, keys: Keys) -> int:
    """Jobs queued and not yet handed to a worker (what the 429 bound applies to)."""
    try:
        held = int(client.xpending(keys.jobs, keys.group)["pending"])  # type: ignore[index]
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
        argv = [
            redis_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--loglevel",
            "warning",
        ]
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
