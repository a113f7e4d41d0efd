"""`bark-serve` started the way a user starts it, used over HTTP, then stopped cleanly."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import soundfile as sf

from tests.support.servers import REPO, free_port


def command() -> list[str]:
    script = shutil.which("bark-serve") or str(Path(sys.executable).parent / "bark-serve")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "app.launch.serve"]


def children_of(pid: int) -> set[int]:
    """Every descendant of `pid`, from /proc (no psutil needed)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "bark-serve exited early"
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError("bark-serve did not become ready")


def test_one_command_serves_offline_demo_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",  # a fresh offline machine: no model configured, no hub
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "BARK_DATA_DIR": str(tmp_path / "data"),
        "BARK_MAX_DURATION_S": "0.25",
        "PYTHONPATH": str(REPO),
    }
    env.pop("BARK_MODEL", None)
    env.pop("BARK_REDIS_URL", None)
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*command(), "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(url, proc, timeout=240)
        assert ready["demo"] is True and "RANDOM" in ready["warning"]
        # the curl, as httpx
        r = httpx.post(f"{url}/synthesize", json={"text": "Hello"}, timeout=120)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        audio, sr = sf.read(io.BytesIO(r.content))
        assert sr == 24000 and len(audio) > 0
        assert httpx.get(f"{url}/voices").json()["demo"] is True
        family = children_of(proc.pid)
        assert len(family) >= 2  # redis-server and a worker
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in family if alive(p)], "orphans left behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "RANDOM weights" in text  # said loudly at start-up
    assert (tmp_path / "data" / "redis").is_dir()  # the append-only data lives there


def test_with_redis_url_it_runs_only_the_api(redis_url, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "BARK_REDIS_URL": redis_url,
        "PYTHONPATH": str(REPO),
        "BARK_REDIS_PREFIX": f"solo{uuid.uuid4().hex[:6]}",
    }
    proc = subprocess.Popen(
        [*command(), "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert r.status_code == 200
        assert children_of(proc.pid) == set()  # no embedded redis, no workers
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
