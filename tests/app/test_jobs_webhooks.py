"""Webhooks of /jobs (issue 17): a local receiver on loopback gets one signed POST per job;
a failing one is retried, then given up on; hosts outside the allow-list are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.app.conftest import E2E_PREFIX

SECRET = "webhook-secret-for-tests"


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers `status`."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.posts: list[tuple[dict[str, str], bytes, float]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.posts.append(
                    ({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                )
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_posts(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(200)
    yield r
    r.server.shutdown()


def test_one_signed_post_per_job(make_api, workers, receiver):
    api = make_api(E2E_PREFIX, webhook_hosts=["127.0.0.1"], webhook_secret=SECRET)
    with httpx.Client(base_url=api.url, timeout=60) as c:
        r = c.post("/jobs", json={"text": "Call me back.", "seed": 5, "webhook_url": receiver.url})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        receiver.wait_posts(1)
        time.sleep(1.0)  # a second POST would have come by now
    assert len(receiver.posts) == 1
    headers, body, _ = receiver.posts[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-bark-signature"], expected)
    assert headers["x-bark-job-id"] == job_id
    sent = json.loads(body)
    assert sent["id"] == job_id and sent["status"] == "done" and sent["chunks_done"] == sent["n_chunks"]
    # a body altered in transit no longer verifies
    forged = "sha256=" + hmac.new(SECRET.encode(), body + b" ", hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(headers["x-bark-signature"], forged)


def test_failing_receiver_is_retried_then_given_up(make_api, workers):
    failing = Receiver(503)
    try:
        api = make_api(
            E2E_PREFIX,
            webhook_hosts=["127.0.0.1"],
            webhook_secret=SECRET,
            webhook_attempts=3,
            webhook_backoff_s=0.2,
        )
        with httpx.Client(base_url=api.url, timeout=60) as c:
            r = c.post("/jobs", json={"text": "Nobody answers.", "webhook_url": failing.url})
            assert r.status_code == 202
            failing.wait_posts(3)
            time.sleep(1.5)  # long past a 4th attempt's delay
        assert len(failing.posts) == 3
        gaps = [b[2] - a[2] for a, b in zip(failing.posts, failing.posts[1:], strict=False)]
        assert gaps[1] > gaps[0] * 1.5  # backoff doubles
        assert [h["x-bark-attempt"] for h, _, _ in failing.posts] == ["1", "2", "3"]
    finally:
        failing.server.shutdown()


@pytest.mark.parametrize(
    ("url", "hosts", "why"),
    [
        ("http://10.0.0.1/hook", ["127.0.0.1"], "not allowed"),
        ("http://169.254.169.254/latest", ["127.0.0.1"], "not allowed"),
        ("ftp://127.0.0.1/hook", ["127.0.0.1"], "http(s)"),
        ("http://127.0.0.1/hook", [], "webhooks are off"),
    ],
)
def test_webhook_url_outside_the_allow_list_is_422(make_api, workers, url, hosts, why):
    secret = {"webhook_secret": SECRET} if hosts else {}
    api = make_api(E2E_PREFIX, webhook_hosts=hosts, **secret)
    with httpx.Client(base_url=api.url, timeout=30) as c:
        r = c.post("/jobs", json={"text": "Hi.", "webhook_url": url})
    assert r.status_code == 422 and r.json()["error"]["param"] == "webhook_url"
    assert why in r.json()["error"]["message"]
