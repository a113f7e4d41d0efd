"""Status codes and the one error shape, on a real server with no worker behind it."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.support.servers import register_worker


def assert_error(r: httpx.Response, status: int, type_: str, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"]
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == status and err["type"] == type_ and err["message"]
    if param is not None:
        assert err["param"] == param
    return err


@pytest.fixture
def empty(make_api):
    """An API on a key prefix with no worker at all."""
    server = make_api(f"empty{uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_health_and_readiness_without_worker(empty):
    assert empty.get("/healthz").json() == {"status": "ok"}
    assert_error(empty.get("/readyz"), 503, "service_unavailable")


def test_no_worker_is_503_at_once(empty):
    started = time.monotonic()
    r = empty.post("/synthesize", json={"text": "hello"})
    assert_error(r, 503, "service_unavailable")
    assert r.headers["retry-after"]
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 4097}, "text"),
        ({"text": "hi", "format": "wma"}, "format"),
        ({"text": "hi", "text_temp": 2.5}, "text_temp"),
        ({"text": "hi", "min_eos_p": -0.1}, "min_eos_p"),
        ({"text": "hi", "seed": -1}, "seed"),
        ({"text": "hi", "seed": False}, "seed"),  # JSON booleans are not numbers here
        ({"text": "hi", "text_temp": True}, "text_temp"),
        ({"text": "hi", "stream": 1}, "stream"),
        ({"text": "hi", "seed": "7"}, "seed"),
        ({"text": "hi", "surprise": 1}, "surprise"),
    ],
)
def test_invalid_bodies_are_422(empty, body, param):
    assert_error(empty.post("/synthesize", json=body), 422, "invalid_request_error", param)


def test_text_of_4096_chars_after_strip_is_accepted_by_validation(empty):
    # passes validation, then fails on the missing worker: 503, not 422
    r = empty.post("/synthesize", json={"text": "  " + "x" * 4096 + "  "})
    assert r.status_code == 503


def test_malformed_json_is_422(empty):
    r = empty.post("/synthesize", content=b"{nope", headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_request_error")


def test_unknown_route_and_method(empty):
    assert_error(empty.get("/nope"), 404, "not_found_error")
    assert_error(empty.get("/synthesize"), 405, "method_not_allowed")


def test_body_limit_is_413(empty):
    big = json.dumps({"text": "x" * (70 * 1024)})
    r = empty.post("/synthesize", content=big, headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")

    # also without a Content-Length (chunked upload)
    def chunks():
        yield big.encode()

    r = empty.post("/synthesize", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_request_id_is_echoed_or_made(empty):
    assert empty.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = empty.get("/healthz", headers={"x-request-id": "bad id!"}).headers["x-request-id"]
    assert made != "bad id!" and len(made) == 32


def test_openai_speed_and_model(empty):
    base = {"model": "tts-1", "input": "hi", "voice": "alloy"}
    assert_error(
        empty.post("/v1/audio/speech", json={**base, "model": "whisper-9"}), 404, "model_not_found", "model"
    )
    assert_error(
        empty.post("/v1/audio/speech", json={**base, "speed": 9}), 422, "invalid_request_error", "speed"
    )


def test_queue_full_is_429(make_api, redis_url):
    prefix = f"full{uuid.uuid4().hex[:6]}"
    # a registered worker that consumes nothing: the queue can only fill up
    register_worker(redis_url, prefix, "stuck", state="busy")
    server = make_api(prefix, queue_max=2, request_timeout_s=30)
    # two clients whose jobs are queued and never start (they give up waiting; a cancelled
    # job still holds its place until a worker settles it)
    with httpx.Client(base_url=server.url, timeout=0.5) as c:
        for body in ({"text": "a"}, {"text": "b", "stream": True}):
            with pytest.raises(httpx.TimeoutException):
                c.post("/synthesize", json=body)
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r429 = c.post("/synthesize", json={"text": "c"})
    assert_error(r429, 429, "queue_full")
    assert int(r429.headers["retry-after"]) > 0


def test_redis_down_is_503_not_a_hang(make_api):
    server = make_api("down", redis_url="redis://127.0.0.1:1")
    with httpx.Client(base_url=server.url, timeout=10) as c:
        started = time.monotonic()
        assert_error(c.post("/synthesize", json={"text": "hi"}), 503, "service_unavailable")
        assert_error(c.get("/readyz"), 503, "service_unavailable")
        assert c.get("/healthz").status_code == 200
        assert time.monotonic() - started < 8


def test_api_keys(make_api):
    server = make_api(f"keys{uuid.uuid4().hex[:6]}", api_keys=["k-one", "k-two"])
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503  # open, but nothing is ready
        err = assert_error(c.get("/voices"), 401, "authentication_error")
        assert "key" in err["message"]
        assert c.get("/voices", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/voices", headers={"authorization": "Bearer k-two"}).status_code == 200
        assert c.get("/voices", headers={"x-api-key": "k-one"}).status_code == 200
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", params={"api_key": "k-one"}).status_code == 200
        assert c.post("/synthesize", json={"text": "x"}).status_code == 401


def test_cors_allow_list(make_api):
    server = make_api(f"cors{uuid.uuid4().hex[:6]}", cors_origins=["https://ok.example"])
    preflight = {
        "origin": "https://ok.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.options("/synthesize", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://ok.example"
        r = c.options("/synthesize", headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = c.get("/healthz", headers={"origin": "https://ok.example"})
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
