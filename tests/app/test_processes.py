"""Process-level promises: the API never imports torch; SIGTERM lets a worker finish its job;
a batch of jobs with different voices gives each the audio it would get alone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx
from websockets.sync.client import connect

from tests.support.servers import REPO
from tests.support.ws import read_until_done

LONG = " ".join(
    f"This is sentence number {i}, which is long enough to fill a chunk of text by itself." for i in range(10)
)


def test_api_process_never_imports_torch():
    code = (
        "import sys; import app.launch.serve, app.api.app, app.api.routes.voices;"
        "from app.core.settings import Settings;"
        "app.api.app.create_app(Settings(redis_url='redis://127.0.0.1:1'));"
        "bad = [m for m in ('torch', 'transformers', 'bark_core.pipeline') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sigterm_finishes_the_job_in_hand(api, client, workers):
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"text": LONG, "seed": 4}))
        events = []
        signalled = None
        while True:
            message = ws.recv(timeout=90)
            if isinstance(message, bytes):
                if signalled is None:
                    worker_id = next(e for e in events if e["type"] == "started")["worker"]
                    pid = next(h["pid"] for h in workers.heartbeats() if h["id"] == worker_id)
                    signalled = next(p for p in workers.procs if p.pid == pid)
                    signalled.send_signal(signal.SIGTERM)
                continue
            events.append(json.loads(message))
            if events[-1]["type"] in ("done", "error"):
                break
    assert events[-1]["type"] == "done"
    assert [e["type"] for e in events].count("started") == 1  # not re-run elsewhere
    assert signalled is not None and signalled.wait(timeout=30) == 0


def test_batched_jobs_match_solo_runs(api, client, workers):
    voices = ["v2/en_speaker_1", "v2/de_speaker_2", None, "v2/fr_speaker_3", "v2/en_speaker_9", None]
    bodies = [
        {
            "text": f"Batch row {i}. " * (1 + i % 3),
            "voice": v,
            "seed": 100 + i,
            "format": "pcm",
            "text_temp": 0.5 + 0.1 * i,
        }
        for i, v in enumerate(voices)
    ]
    batched: dict[int, tuple[bytes, int]] = {}

    def run(i: int) -> None:
        with connect(f"{api.ws_url}/ws/synthesize") as ws:
            ws.send(json.dumps(bodies[i]))
            events, pcm = read_until_done(ws)
            batched[i] = (pcm, next(e["batch"] for e in events if e["type"] == "started"))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(120)
    assert sorted(batched) == list(range(len(bodies)))
    assert max(batch for _, batch in batched.values()) > 1  # some jobs really shared a batch
    with httpx.Client(base_url=api.url, timeout=60) as c:
        for i, body in enumerate(bodies):
            solo = c.post("/synthesize", json=body)
            assert solo.status_code == 200
            assert solo.content == batched[i][0], f"row {i} differs from its solo run"
