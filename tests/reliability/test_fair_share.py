"""A fair share per key in the workers (issue 17, item 5): another key's job does not wait for a
flooding key's backlog. Real uvicorn, Redis and two worker processes (batches of 4).

With `BARK_FAIR_WINDOW=1` in the environment (the workers inherit it: first come, first
served) this test fails: B's job then starts after every one of A's.
"""

from __future__ import annotations

import httpx

from .reliability_kit import record, sentences, wait_until

KEY_A, KEY_B = "flood-key-a-0123456789", "quiet-key-b-0123456789"
FLOOD = 12  # A's limit and its jobs: more than the two workers' 8 rows, so some must wait


def _status(c: httpx.Client, job_id: str, headers: dict[str, str]) -> dict:
    r = c.get(f"/jobs/{job_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_another_keys_job_starts_before_a_flooding_keys_backlog_drains(make_api, workers):
    api = make_api(api_keys=[KEY_A, KEY_B], jobs_per_key=FLOOD, queue_max=64)
    a = {"Authorization": f"Bearer {KEY_A}"}
    b = {"Authorization": f"Bearer {KEY_B}"}
    with httpx.Client(base_url=api.url, timeout=60) as c:
        flood = [c.post("/jobs", json={"text": sentences(2, f"-f{i}")}, headers=a) for i in range(FLOOD)]
        over = c.post("/jobs", json={"text": "One too many."}, headers=a)
        mine = c.post("/jobs", json={"text": "A quiet job."}, headers=b)
        assert [r.status_code for r in flood] == [202] * FLOOD and over.status_code == 429
        assert mine.status_code == 202, mine.text
        ahead = mine.json()["position"]  # A's jobs still waiting when B's was admitted
        a_ids, b_id = [r.json()["id"] for r in flood], mine.json()["id"]
        assert wait_until(lambda: _status(c, b_id, headers=b)["status"] == "done", 120)
        assert wait_until(lambda: all(_status(c, j, headers=a)["status"] == "done" for j in a_ids), 180)
        b_start = _status(c, b_id, headers=b)["started_at"]
        a_starts = [_status(c, j, headers=a)["started_at"] for j in a_ids]
    before = sum(1 for s in a_starts if s < b_start)
    record("fair_share_worker", a_jobs=FLOOD, b_waited_behind=ahead, a_started_before_b=before)
    assert ahead > 0  # else nothing was waiting and the order proves nothing
    assert before < FLOOD  # B started while some of A's backlog still waited
