"""A broken accelerator context (fault injection: what a CUDA device-side assert raises) ends its
worker process, which leaves its jobs unsettled, and a healthy worker reclaims and finishes them."""

from __future__ import annotations

import httpx

from app.queue.wire import Done, Started
from app.worker.faults import DEVICE
from app.worker.main import EXIT_DEVICE_FAILED

from .conftest import FAULTS
from .reliability_kit import new_prefix, out_events, wait_until


def test_device_failure_ends_the_worker_and_the_job_completes_elsewhere(make_api, make_workers):
    prefix = new_prefix("dev")
    pool = make_workers(prefix, 2, **FAULTS)
    api = make_api(prefix)
    with httpx.Client(base_url=api.url, timeout=120) as http:
        body = {"text": f"{DEVICE} Hello there.", "seed": 5, "format": "pcm"}
        response = http.post("/synthesize", json=body)
        job_id = response.headers.get("x-bark-job-id")
    assert response.status_code == 200, response.text
    assert len(response.content) > 0
    assert wait_until(lambda: any(p.poll() is not None for p in pool.procs), 30)
    assert sorted(p.returncode for p in pool.procs if p.poll() is not None) == [EXIT_DEVICE_FAILED]
    events = [e for _, e in out_events(pool.redis, pool.keys, job_id)]
    attempts = [e.attempt for e in events if isinstance(e, Started)]
    assert attempts == [1, 2], events  # ran on the failed worker, then reclaimed once
    assert isinstance(events[-1], Done) and events[-1].attempt == 2
