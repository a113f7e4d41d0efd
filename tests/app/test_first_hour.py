"""A new user's first hour: a bad configuration stops bark-serve at once with one line, and a
run after a run with another model shows nothing of the earlier one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from app.core.startup import CONFIG_ERROR, USAGE_ERROR
from app.launch.embedded_redis import EmbeddedRedis
from app.launch.supervisor import WorkerPool
from app.queue.keys import Keys
from app.queue.registry import Heartbeat
from app.queue.wire import BuiltinVoices
from tests.app.test_serve_cli import command
from tests.support.servers import REPO, free_port

FAIL_WITHIN_S = 60  # torch's import and the worker's start on a busy 2-core machine


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "BARK_DATA_DIR": str(tmp_path / "data"),
        "BARK_MAX_DURATION_S": "0.25",
        "BARK_TORCH_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    env.pop("BARK_REDIS_URL", None)
    return {**env, **extra}


def _serve_until_exit(tmp_path: Path, **extra: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [*command(), "--port", str(free_port()), "--workers", "1"],
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=FAIL_WITHIN_S + 60,
        cwd=tmp_path,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


@pytest.mark.service
@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("BARK_MODEL", "{tmp}/no-such-model", "no checkpoint directory"),
        ("BARK_DTYPE", "float16", "float16 is not supported on CPU"),
    ],
)
def test_a_bad_model_or_dtype_stops_bark_serve_with_one_line(tmp_path, tiny_checkpoint, setting, value, said):
    if setting == "BARK_DTYPE":
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("float16 is valid on this machine's GPU")
    extra = {"BARK_MODEL": str(tiny_checkpoint), setting: value.format(tmp=tmp_path)}
    code, log, took = _serve_until_exit(tmp_path, **extra)
    assert code == CONFIG_ERROR, log[-3000:]
    assert took < FAIL_WITHIN_S
    assert "Traceback" not in log
    errors = [line for line in log.splitlines() if said in line]
    assert len(errors) == 1, errors  # said once: not restarted
    assert f"{setting}=" in errors[0]
    assert "restarting" not in log


def test_a_bad_bark_value_is_one_line_naming_the_variable(tmp_path):
    code, log, _ = _serve_until_exit(tmp_path, BARK_QUEUE_MAX="lots")
    assert code == USAGE_ERROR
    assert "Traceback" not in log
    assert log.strip().splitlines() == [
        "bark-serve: invalid BARK_QUEUE_MAX: Input should be a valid integer, unable to parse string as "
        "an integer (got 'lots')"
    ]


def test_bark_worker_exits_config_error_on_a_bad_model(tmp_path, redis_url):
    env = _env(tmp_path, BARK_REDIS_URL=redis_url, BARK_MODEL=str(tmp_path / "absent"))
    result = subprocess.run(
        [sys.executable, "-m", "app.worker.main"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == CONFIG_ERROR
    log = result.stdout + result.stderr
    assert "Traceback" not in log and log.count("BARK_MODEL=") == 1


def _pool(tmp_path: Path, code: int) -> tuple[WorkerPool, Path]:
    """A pool of one 'worker' that records each start and exits `code`."""
    starts = tmp_path / "starts"
    script = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit({code})"
    return WorkerPool(1, {}, grace_s=1, argv=(sys.executable, "-c", script)), starts


def test_the_supervisor_does_not_restart_a_config_error(tmp_path):
    pool, starts = _pool(tmp_path, CONFIG_ERROR)
    pool.start()
    try:
        assert pool.failed.wait(10)
        time.sleep(2.5)  # past the first restart delay (1 s)
        assert starts.read_text() == "x"
    finally:
        pool.stop()


def test_the_supervisor_still_restarts_a_crash(tmp_path):
    pool, starts = _pool(tmp_path, 1)
    pool.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(starts.read_text() if starts.exists() else "") < 2:
            time.sleep(0.2)
        assert len(starts.read_text()) >= 2
        assert not pool.failed.is_set()
    finally:
        pool.stop()


def _leave_an_earlier_run(data_dir: Path, model: str) -> None:
    """What a run with another model leaves in the embedded Redis's append-only file: its
    built-in voices record and a worker registration still inside its TTL."""
    server = EmbeddedRedis(data_dir / "redis")
    client = redis.Redis.from_url(server.start())
    keys = Keys()
    client.set(keys.builtin_voices, BuiltinVoices(model, True, frozenset({"v2/en_speaker_0"})).to_json())
    Heartbeat(client, keys, "earlier-run-worker", ttl_s=600).update(state="idle", model=model, pid=1)
    client.close()
    server.stop()


@pytest.mark.service
def test_a_run_after_a_run_with_another_model_shows_only_the_new_one(tmp_path, tiny_checkpoint):
    earlier = "/models/earlier-tiny-random"
    _leave_an_earlier_run(tmp_path / "data", earlier)
    model = shutil.copytree(tiny_checkpoint, tmp_path / "new-model")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*command(), "--port", str(port), "--workers", "1"],
        env=_env(tmp_path, BARK_MODEL=str(model)),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        voices = _first_answer(url, "/voices", proc)  # before the new worker has loaded
        assert voices["model"] in (None, str(model)) and earlier not in str(voices)
        early = httpx.post(f"{url}/synthesize", json={"text": "Hi."}, timeout=240)
        if early.status_code == 503:  # before the worker's first heartbeat: its own, starting
            assert "workers are starting" in early.json()["error"]["message"]
            assert "bark-worker" not in early.json()["error"]["message"]
        else:
            assert early.status_code == 200  # it beat (loading) first: the job waited for it
        ready = _first_answer(url, "/readyz", proc, timeout=240)
        assert ready["model"] == str(model)
        assert [w["model"] for w in ready["workers"]] == [str(model)]  # the live one, only
        assert httpx.get(f"{url}/voices").json()["model"] == str(model)
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    assert earlier not in (tmp_path / "serve.log").read_text()


def _first_answer(url: str, path: str, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "bark-serve exited early"
        try:
            r = httpx.get(url + path, timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{path} did not answer 200")
