"""SIGTERM to `bark-serve` under load: the API turns not-ready and refuses new work, every
synthesis in flight (HTTP stream or websocket) runs to its end, then everything stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.servers import REPO, free_port

from .reliability_kit import record, sentences, wait_until

IN_FLIGHT = 6  # 3 HTTP streams + 3 websockets
CHUNKS = 4  # text chunks per job: after its first audio, each has three to go
WAV_HEADER_BYTES = 44


def _http_stream(url: str, body: dict, audio: threading.Event) -> str:
    """A chunked WAV stream read to its end; `audio` is set once its first PCM is in."""
    data = b""
    with httpx.Client(base_url=url, timeout=120) as http, http.stream("POST", "/synthesize", json=body) as r:
        try:
            for piece in r.iter_bytes():
                data += piece
                if len(data) > WAV_HEADER_BYTES:
                    audio.set()
        except httpx.HTTPError as exc:
            return f"cut: {exc.__class__.__name__}"
    return "done" if r.status_code == 200 and len(data) > WAV_HEADER_BYTES else f"status {r.status_code}"


def _ws(ws_url: str, body: dict, audio: threading.Event) -> str:
    """A websocket job read to its end; `audio` is set at its first binary frame."""
    try:
        with connect(f"{ws_url}/ws/synthesize", open_timeout=30) as ws:
            ws.send(json.dumps(body))
            while True:
                message = ws.recv(timeout=120)
                if isinstance(message, bytes):
                    audio.set()
                    continue
                event = json.loads(message)
                if event["type"] in ("done", "error"):
                    return "done" if event["type"] == "done" else f"error {event['error']['code']}"
    except (ConnectionClosed, TimeoutError) as exc:
        return f"cut: {exc.__class__.__name__}"


def test_sigterm_drains_then_stops(tmp_path: Path, tiny_checkpoint: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "BARK_MODEL": str(tiny_checkpoint),
        "BARK_DATA_DIR": str(tmp_path / "data"),
        "BARK_MAX_DURATION_S": "0.25",
        "BARK_TORCH_THREADS": "1",
        "BARK_LOG_JSON": "true",
        "BARK_HEARTBEAT_INTERVAL_S": "0.5",
        "BARK_HEARTBEAT_TTL_S": "3",
    }
    env.pop("BARK_REDIS_URL", None)
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.launch.serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        assert wait_until(lambda: _ready(url) == 200, 120, 0.3), (tmp_path / "serve.log").read_text()[-3000:]
        outcomes: dict[int, str] = {}
        audio = [threading.Event() for _ in range(IN_FLIGHT)]

        def run(i: int) -> None:
            body = {"text": sentences(CHUNKS, f"-{i}"), "seed": i}
            if i % 2:
                outcomes[i] = _ws(f"ws://127.0.0.1:{port}", body, audio[i])
            else:
                outcomes[i] = _http_stream(url, {**body, "stream": True, "format": "wav"}, audio[i])

        clients = [threading.Thread(target=run, args=(i,)) for i in range(IN_FLIGHT)]
        for t in clients:
            t.start()
        # Signal once every job has audio out and before any has ended: a drain that only
        # sees finished jobs proves nothing.
        assert all(a.wait(90) for a in audio), "not every job started"
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        running_at_signal = IN_FLIGHT - len(outcomes)
        ended = IN_FLIGHT - running_at_signal
        assert ended == 0, f"{ended} jobs had ended before SIGTERM"
        time.sleep(0.3)
        readyz_draining = _ready(url)
        refused = httpx.post(f"{url}/synthesize", json={"text": "too late"}, timeout=10)
        for t in clients:
            t.join(120)
        rc = proc.wait(timeout=120)
        stopped_s = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    lost = sum(1 for o in outcomes.values() if o != "done")
    record(
        "sigterm_drain",
        in_flight=IN_FLIGHT,
        running_at_signal=running_at_signal,
        jobs_lost=lost,
        outcomes=sorted(set(outcomes.values())),
        readyz_while_draining=readyz_draining,
        new_request_while_draining=refused.status_code,
        retry_after=refused.headers.get("retry-after"),
        exit_code=rc,
        sigterm_to_exit_s=round(stopped_s, 2),
    )
    assert len(outcomes) == IN_FLIGHT and lost == 0, outcomes
    assert readyz_draining == 503
    assert refused.status_code == 503 and refused.headers.get("retry-after")
    assert rc == 0


def _ready(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code
    except httpx.TransportError:
        return 0
