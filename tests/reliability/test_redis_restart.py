"""The Redis server SIGKILLed and restarted (AOF on) under load: clients in flight get a clean
error at once, the API and the workers recover by themselves, and no acknowledged job is lost."""

from __future__ import annotations

import threading
import time

import httpx

from app.queue.wire import Failed, is_terminal
from tests.support.ws import ws_job

from .reliability_kit import (
    RestartableRedis,
    new_prefix,
    out_events,
    record,
    sentences,
    wait_until,
)

CLIENTS = 4
JOBS_PER_CLIENT = 25  # bound on the load, whatever the timing
LOAD_BEFORE_S = 4.0
OUTAGE_S = 2.0
LOAD_AFTER_S = 6.0
# appendfsync everysec: a machine crash may lose the last second of writes. A killed process
# loses none of them (Redis hands the AOF to the kernel before it replies), so both counts
# below must be 0; they are kept apart to show the window was exercised.
FSYNC_WINDOW_S = 1.0
CLEAN_ERROR_WITHIN_S = 10.0  # bound on a client's wait once Redis is gone


def test_redis_restart_under_load(tmp_path, make_api, make_workers):
    server = RestartableRedis(tmp_path)
    server.start()
    try:
        _run(server, make_api, make_workers)
    finally:
        server.stop()


def _run(server, make_api, make_workers):
    prefix = new_prefix("rr")
    pool = make_workers(prefix, 2, redis_url=server.url)
    api = make_api(prefix, redis_url=server.url, queue_max=64)
    results = []
    stop = threading.Event()

    def client(i: int) -> None:
        for n in range(JOBS_PER_CLIENT):
            if stop.is_set():
                return
            body = {"text": sentences(4, f"-{i}-{n}"), "seed": 100 * i + n}
            started = time.monotonic()
            result = ws_job(api.ws_url, body, timeout=60)
            results.append((started, result))
            if result.outcome != "done":
                time.sleep(0.2)  # a client's back-off

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(LOAD_BEFORE_S)
    killed_at = time.monotonic()
    server.kill()
    time.sleep(OUTAGE_S)
    back_at = server.start()
    ready_s = first_ok_s = None
    with httpx.Client(base_url=api.url, timeout=30) as http:
        deadline = back_at + 30
        while time.monotonic() < deadline and first_ok_s is None:
            if ready_s is None and http.get("/readyz").status_code == 200:
                ready_s = time.monotonic() - back_at
            if ready_s is not None:
                probe = http.post("/synthesize", json={"text": "Are we back?", "format": "pcm"})
                if probe.status_code == 200:
                    first_ok_s = time.monotonic() - back_at
            time.sleep(0.1)
    time.sleep(LOAD_AFTER_S)
    # the load goes on until some client has started a job after recovery: on a slow machine a
    # client can still be in its pre-outage job when LOAD_AFTER_S ends
    ready_at_mono = back_at + (ready_s if ready_s is not None else 0.0)
    wait_until(lambda: any(s > ready_at_mono and r.ended_at for s, r in list(results)), 90, 0.2)
    stop.set()
    for t in threads:
        t.join(90)

    in_flight = [r for s, r in results if s < killed_at < (r.ended_at or 0)]
    hung = [r for _, r in results if r.close_code == -1]
    waits = [r.ended_at - killed_at for r in in_flight if r.outcome != "done"]
    outcomes_in_flight = sorted({r.outcome for r in in_flight})
    # Acknowledged (the server said `queued`) and not done for its client: the job must still
    # reach an end in Redis once it is back (workers re-run what the AOF kept).
    unfinished = [
        r for _, r in results if r.job_id and r.outcome != "done" and r.queued_at and r.queued_at < killed_at
    ]
    durable = [r for r in unfinished if r.queued_at < killed_at - FSYNC_WINDOW_S]
    late = [r for r in unfinished if r not in durable]

    def ended(r) -> bool:
        return any(is_terminal(e) for _, e in out_events(pool.redis, pool.keys, r.job_id))

    wait_until(lambda: all(ended(r) for r in unfinished), 60, 0.5)
    lost_durable = sum(1 for r in durable if not ended(r))
    lost_late = sum(1 for r in late if not ended(r))
    # Submitted once the service said it was ready again. Between Redis answering and the
    # first worker heartbeat after it (every heartbeat lapsed during the outage) a request
    # waits up to one heartbeat interval for a worker (the registry still knows them), so
    # none of these is refused.
    ready_at = back_at + ready_s if ready_s is not None else float("inf")
    after = [r for s, r in results if s > ready_at]
    refused_before_ready = sum(1 for s, r in results if back_at < s <= ready_at and r.outcome != "done")
    # Their clients are gone: the API re-sends the cancels the outage held back, so workers
    # drop these jobs rather than run them for nobody.
    orphans_cancelled = sum(
        1
        for r in unfinished
        if any(
            isinstance(e, Failed) and e.type == "cancelled"
            for _, e in out_events(pool.redis, pool.keys, r.job_id)
        )
    )

    record(
        "redis_restart",
        jobs=len(results),
        in_flight_at_kill=len(in_flight),
        in_flight_outcomes=outcomes_in_flight,
        max_wait_for_clean_error_s=round(max(waits, default=0), 2),
        hung=len(hung),
        readyz_after_restart_s=round(ready_s or -1, 2),
        first_synthesis_after_restart_s=round(first_ok_s or -1, 2),
        acknowledged_unfinished=len(unfinished),
        acknowledged_lost=lost_durable,
        acknowledged_in_last_fsync_window=len(late),
        lost_in_last_fsync_window=lost_late,
        orphans_cancelled=orphans_cancelled,
        refused_before_ready=refused_before_ready,
        jobs_after_recovery=len(after),
        done_after_recovery=sum(1 for r in after if r.outcome == "done"),
    )
    assert not hung
    assert refused_before_ready == 0, [r.outcome for s, r in results if back_at < s <= ready_at]
    assert in_flight, "nothing was in flight when Redis died: the test proved nothing"
    assert all(o == "done" or o.startswith(("error 503", "closed")) for o in outcomes_in_flight)
    assert max(waits, default=0) < CLEAN_ERROR_WITHIN_S
    assert first_ok_s is not None, "no synthesis succeeded within 30 s of Redis coming back"
    assert lost_durable == 0 and lost_late == 0
    assert after and all(r.outcome == "done" for r in after), [r.outcome for r in after]
    # RELIABILITY.md's claim: ready again within a heartbeat TTL of Redis answering (a worker
    # beats every heartbeat_interval_s and re-registers at once)
    assert ready_s is not None and ready_s <= api.settings.heartbeat_ttl_s, ready_s
