"""Issue 18 on a real server (uvicorn with bark-serve's own config, real Redis), no worker
unless a test registers one: the key check before the body, the HTTP server's limits, one text
rule, bounded and owned voice uploads, and the smaller items."""

from __future__ import annotations

import io
import json
import socket
import time
import uuid
import zipfile

import httpx
import numpy as np
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from app.launch.embedded_redis import EmbeddedRedis
from app.queue import voice_store
from app.queue.keys import Keys
from app.queue.wire import BuiltinVoices
from bark_core.planner import estimate_seconds
from bark_core.voices import VoicePreset
from tests.support.presets import preset_npz
from tests.support.servers import register_worker

KEY, OTHER, ADMIN = "sec-key-a-0123456789", "sec-key-b-9876543210", "sec-admin-5555"


def _prefix(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:6]}"


def _upload(c: httpx.Client, voice_id: str, key: str | None, body: bytes | None = None, **params):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    files = {"file": ("p.npz", body if body is not None else preset_npz(), "application/octet-stream")}
    return c.post("/voices", data={"id": voice_id}, files=files, headers=headers, params=params)


def _raw(port: int, data: bytes, read_timeout: float = 5.0) -> tuple[bytes, float]:
    """Send raw bytes, read until the server closes: (everything read, seconds until closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        started = time.monotonic()
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
        return out, time.monotonic() - started


# --- the key check comes before the body -------------------------------------------------


def test_keyless_requests_are_401_before_their_body_is_read(make_api):
    server = make_api(_prefix("gate"), api_keys=[KEY])
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.post("/synthesize", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 401, r.text  # not 422: nothing parsed the body
        assert r.headers["www-authenticate"] == "Bearer"
        r = c.post("/voices", content=b"--x\r\ngarbage", headers={"content-type": "multipart/form-data"})
        assert r.status_code == 401, r.text  # not 400
        # with the key, the same malformed JSON is the 422 it always was
        r = c.post("/synthesize", content=b"{nope", headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code == 422
    # A keyless 5 MB upload that sends 1 KB: answered 401 at once, and the connection closed.
    port = server.settings.port
    head = (
        f"POST /voices HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
        f"boundary=x\r\nContent-Length: {5 * 1024 * 1024}\r\n\r\n"
    ).encode()
    out, seconds = _raw(port, head + b"x" * 1024)
    assert out.startswith(b"HTTP/1.1 401 "), out[:200]
    assert seconds < 3, seconds  # closed by the server, not by our read timeout


# --- the HTTP server's limits ------------------------------------------------------------


def test_request_head_size_and_count_are_bounded(make_api):
    server = make_api(_prefix("head"), max_header_bytes=8192, max_header_count=20)
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/healthz", headers={"x-big": "a" * 4000}).status_code == 200
        assert c.get("/healthz", headers={"x-big": "a" * 9000}).status_code == 431
        many = {f"x-h{i}": "1" for i in range(30)}
        r = c.get("/healthz", headers=many)
        assert r.status_code == 431 and r.json()["error"]["message"] == "more than 20 request headers"


def test_slow_and_idle_connections_are_closed(make_api):
    server = make_api(_prefix("slow"), header_timeout_s=1.0, keep_alive_s=1.0)
    port = server.settings.port
    # idle from the start, and a head that never ends: both closed after the head deadline
    for data in (b"", f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-A: ".encode()):
        out, seconds = _raw(port, data, read_timeout=10)
        assert out == b"" and 0.8 < seconds < 5, (out, seconds)
    # after a response: closed again within keep-alive + head deadline
    out, seconds = _raw(port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(), 10)
    assert out.startswith(b"HTTP/1.1 200 ") and seconds < 5, (out[:40], seconds)


def test_a_slow_body_is_408(make_api):
    server = make_api(_prefix("body"), body_timeout_s=1.0)
    port = server.settings.port
    head = (
        f"POST /synthesize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{"
    ).encode()
    out, seconds = _raw(port, head, read_timeout=10)
    assert out.startswith(b"HTTP/1.1 408 "), out[:100]
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "request_timeout"
    assert seconds < 5


def test_connections_above_the_cap_are_closed_at_once(make_api):
    server = make_api(_prefix("conn"), max_connections=4, header_timeout_s=30)
    port = server.settings.port
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        extra.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        try:
            got = extra.recv(100)
        except ConnectionResetError:
            got = b""
        assert got == b"", got
        extra.close()
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/healthz").status_code == 200  # room again once they are gone


# --- one text rule on every route --------------------------------------------------------

BAD_TEXTS = [
    ('"a\\ud800b"', "surrogate"),
    ('"\\u0000\\u0000"', "speakable"),
    ('"\\u200b\\u200c\\ufeff"', "speakable"),
]


def _ws_error(server, body: str) -> tuple[dict, int | None]:
    with connect(f"{server.ws_url}/ws/synthesize", open_timeout=10) as ws:
        ws.send(body)
        event = json.loads(ws.recv(timeout=10))
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as closed:
            return event, closed.rcvd.code if closed.rcvd else None
    raise AssertionError("socket stayed open")


@pytest.mark.parametrize(("text", "word"), BAD_TEXTS)
def test_unspeakable_text_is_422_on_every_route(make_api, text, word):
    server = make_api(_prefix("text"))
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r1 = c.post("/synthesize", content=f'{{"text": {text}}}', headers=headers)
        body = f'{{"model": "tts-1", "voice": "alloy", "input": {text}}}'
        r2 = c.post("/v1/audio/speech", content=body, headers=headers)
    event, code = _ws_error(server, f'{{"text": {text}}}')
    for r in (r1, r2):
        assert r.status_code == 422, r.text
        assert word in r.json()["error"]["message"]
    assert code == 4422 and word in event["error"]["message"]
    assert event["error"]["message"] == r1.json()["error"]["message"]


def test_voice_is_length_limited_and_never_echoed_at_length(make_api):
    server = make_api(_prefix("voice"))
    register_worker(server.settings.redis_url, server.settings.redis_prefix)
    long = "v" * 60_000
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r1 = c.post("/synthesize", json={"text": "hi", "voice": long})
        r2 = c.post("/v1/audio/speech", json={"model": "tts-1", "voice": long, "input": "hi"})
        r3 = c.post("/synthesize", json={"text": "hi", "voice": "u" * 128})  # allowed length, unknown
    event, code = _ws_error(server, json.dumps({"text": "hi", "voice": long}))
    for r in (r1, r2):
        assert r.status_code == 422 and r.json()["error"]["param"] == "voice", r.text
        assert len(r.text) < 1000
    assert code == 4422 and event["error"]["param"] == "voice"
    assert r3.status_code == 404 and "u" * 65 not in r3.text, r3.text


def test_binary_first_websocket_frame_is_a_clean_4422(make_api):
    server = make_api(_prefix("wsbin"))
    with connect(f"{server.ws_url}/ws/synthesize", open_timeout=10) as ws:
        ws.send(b"\x00\x01binary")
        event = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert event["type"] == "error" and event["error"]["param"] == "message"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4422


# --- the audio-seconds cap ---------------------------------------------------------------


def test_audio_seconds_per_request_are_capped(make_api):
    server = make_api(_prefix("cap"), max_request_audio_s=10.0, max_duration_s=None)
    register_worker(server.settings.redis_url, server.settings.redis_prefix)  # else 503 first
    chars = next(n for n in range(1, 4096) if estimate_seconds("a" * n) > 10.5)  # just over 10 s
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.post("/synthesize", json={"text": "a" * chars})
        assert r.status_code == 422 and r.json()["error"]["param"] == "text", r.text
        assert "at most 10 s" in r.json()["error"]["message"]
        # the same text with a per-chunk cap is bounded by it (1 chunk x 2 s): accepted
        ok = c.post("/synthesize", json={"text": "a" * chars, "max_duration_s": 2.0, "stream": True})
        assert ok.status_code != 422, ok.text
        # speed stretches: 40 letters (~3.3 s) at 0.25 is ~13 s
        body = {"model": "tts-1", "voice": "alloy", "input": "b" * 40, "speed": 0.25}
        r = c.post("/v1/audio/speech", json=body)
        assert r.status_code == 422 and r.json()["error"]["param"] == "speed", r.text
        body["speed"] = 1.0
        assert c.post("/v1/audio/speech", json=body).status_code != 422


# --- voice storage: bounded, compact, owned, no built-in id ------------------------------


def test_uploads_are_stored_at_their_narrowest_integer_type(make_api):
    server = make_api(_prefix("narrow"))
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert _upload(c, "compact", None).status_code == 201
    r = redis.Redis.from_url(server.settings.redis_url)
    fields = r.hgetall(Keys(server.settings.redis_prefix).voice("compact"))
    dtypes = {fields[f"{k}:dtype".encode()] for k in ("semantic_prompt", "coarse_prompt", "fine_prompt")}
    assert dtypes == {b"<u2"}  # codes below 1024 and 10,000: 2 bytes each, not 8
    preset = voice_store.decode(fields)
    assert preset.fine.dtype == np.int64  # widened back for the model
    wide = sum(a.nbytes for a in preset.to_arrays().values())
    assert voice_store.stored_bytes(fields) < wide / 3


def test_voice_limits_per_key_and_in_all(make_api):
    one = voice_store.stored_bytes(voice_store.encode(VoicePreset.from_npz_bytes(preset_npz()), "uploaded"))
    server = make_api(
        _prefix("quota"),
        api_keys=[KEY, OTHER],
        voice_max_per_key=2,
        voice_max_total=3,
        voice_max_bytes_per_key=10 * one,
        voice_max_total_bytes=100 * one,
    )
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert _upload(c, "a1", KEY).status_code == 201
        assert _upload(c, "a2", KEY).status_code == 201
        r = _upload(c, "a3", KEY)
        assert r.status_code == 409 and "2 uploaded presets" in r.json()["error"]["message"], r.text
        assert _upload(c, "a1", KEY, overwrite="true").status_code == 201  # replacing is no new one
        assert _upload(c, "b1", OTHER).status_code == 201
        r = _upload(c, "b2", OTHER)
        assert r.status_code == 409 and "the server holds 3" in r.json()["error"]["message"], r.text
        assert c.delete("/voices/a2", headers={"authorization": f"Bearer {KEY}"}).status_code == 204
        assert _upload(c, "b2", OTHER).status_code == 201


def test_voice_bytes_are_limited(make_api):
    one = voice_store.stored_bytes(voice_store.encode(VoicePreset.from_npz_bytes(preset_npz()), "uploaded"))
    server = make_api(_prefix("bytes"), voice_max_bytes_per_key=one + 400, voice_max_total_bytes=10**6)
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert _upload(c, "x1", None).status_code == 201
        r = _upload(c, "x2", None)
        assert r.status_code == 409 and "stored bytes" in r.json()["error"]["message"], r.text


def test_only_the_uploading_key_or_an_admin_changes_a_voice(make_api):
    server = make_api(_prefix("own"), api_keys=[KEY, OTHER], admin_keys=[ADMIN])
    auth = {k: {"authorization": f"Bearer {k}"} for k in (KEY, OTHER, ADMIN)}
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert _upload(c, "mine", KEY).status_code == 201
        r = _upload(c, "mine", OTHER, overwrite="true")
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error", r.text
        assert c.delete("/voices/mine", headers=auth[OTHER]).status_code == 403
        assert _upload(c, "mine", KEY, body=preset_npz(1), overwrite="true").status_code == 201
        assert _upload(c, "mine", ADMIN, overwrite="true").status_code == 201
        assert c.delete("/voices/mine", headers=auth[KEY]).status_code == 403  # the admin's now
        assert c.delete("/voices/mine", headers=auth[ADMIN]).status_code == 204
        assert _upload(c, "again", KEY).status_code == 201
    # Redis records a hash of the key that made it, never the key.
    r = redis.Redis.from_url(server.settings.redis_url)
    keys = Keys(server.settings.redis_prefix)
    stored = r.hgetall(keys.voice("again")) | r.hgetall(f"{keys.uploaded_voices}:meta")
    blob = b"".join(k + v for k, v in stored.items())
    assert KEY.encode() not in blob and stored[b"owner"] and len(stored[b"owner"]) == 32


def _publish_builtins(server, ids: set[str]) -> None:
    r = redis.Redis.from_url(server.settings.redis_url)
    published = BuiltinVoices("m", False, frozenset(ids)).to_json()
    r.set(Keys(server.settings.redis_prefix).builtin_voices, published)


def test_uploads_cannot_take_a_builtin_id_and_voices_group_by_language(make_api):
    server = make_api(_prefix("builtin"))
    ids = {"v2/en_speaker_6", "v2/en_speaker_1", "en_speaker_6", "de_speaker_1", "announcer"}
    _publish_builtins(server, ids)
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for taken in ("en_speaker_6", "announcer", "en_speaker_99"):  # the last: reserved shape
            r = _upload(c, taken, None)
            assert r.status_code == 409 and r.json()["error"]["param"] == "id", (taken, r.text)
        listing = c.get("/voices").json()
    assert listing["by_language"] == {
        "en": {"v1": ["en_speaker_6"], "v2": ["v2/en_speaker_1", "v2/en_speaker_6"]},
        "de": {"v1": ["de_speaker_1"]},
    }
    assert listing["other"] == ["announcer"]
    assert {v["id"] for v in listing["data"]} == ids


def test_voices_are_paginated(make_api):
    server = make_api(_prefix("page"))
    _publish_builtins(server, {"v2/en_speaker_0", "announcer"})
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for i in range(5):
            assert _upload(c, f"u{i}", None, body=preset_npz(i)).status_code == 201
        seen, after, pages = [], None, 0
        while True:
            page = c.get("/voices", params={"limit": 2, **({"after": after} if after else {})}).json()
            pages += 1
            seen += [v["id"] for v in page["data"]]
            if not page["has_more"]:
                assert page["next_after"] is None
                break
            after = page["next_after"]
        assert c.get("/voices", params={"limit": 0}).status_code == 422
        assert c.get("/voices", params={"limit": 1001}).status_code == 422
    assert pages == 4 and seen == sorted(seen) and len(seen) == len(set(seen)) == 7


def test_an_archive_holds_exactly_the_three_members_once_each(make_api):
    server = make_api(_prefix("members"))
    good = zipfile.ZipFile(io.BytesIO(preset_npz()))
    members = {n: good.read(n) for n in good.namelist()}

    def archive(names: list[str]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            for name in names:
                z.writestr(name, members.get(name, members["fine_prompt.npy"]))
        return buffer.getvalue()

    names = sorted(members)
    with httpx.Client(base_url=server.url, timeout=10) as c, pytest.warns(UserWarning):  # zipfile: dup
        for bad in ([*names, "fine_prompt.npy"], [*names, "extra.npy"]):
            r = _upload(c, "m", None, body=archive(bad))
            assert r.status_code == 422 and r.json()["error"]["param"] == "file", r.text
            assert "exactly" in r.json()["error"]["message"]
        r = _upload(c, "m", None, body=archive(names[:2]))
        assert r.status_code == 422 and r.json()["error"]["message"] == "preset lacks semantic_prompt"


def test_a_malformed_npy_header_is_422_in_our_words(make_api):
    server = make_api(_prefix("npy"))
    good = zipfile.ZipFile(io.BytesIO(preset_npz()))
    bad_headers = [
        b"\x93NUMPY\x01\x00" + b"\x20\x00" + b"{'descr': <object at 0x7f00>, }".ljust(32),
        b"\x93NUMPY\x01\x00" + b"\x20\x00" + b"{'descr': '<i8', 'shape': (2,".ljust(32),
        b"\x93NUMPY\x09\x09garbage",
    ]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for header in bad_headers:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as z:
                for name in good.namelist():
                    z.writestr(name, header if name == "fine_prompt.npy" else good.read(name))
            r = _upload(c, "n", None, body=buffer.getvalue())
            assert r.status_code == 422, r.text
            message = r.json()["error"]["message"]
            ours = ("fine_prompt is not a valid .npy array", "file is not a valid .npz preset")
            assert message in ours, message
            assert "0x" not in r.text and "Traceback" not in r.text


# --- the smaller items -------------------------------------------------------------------


def test_docs_never_reflect_the_query_string(make_api):
    server = make_api(_prefix("docs"), api_keys=[KEY])
    evil = "</script><script>alert(1)</script>"
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for page in ("/docs", "/redoc"):
            r = c.get(page, params={"api_key": KEY, "x": evil, "y": '"><img src=x onerror=alert(1)>'})
            assert r.status_code == 200
            assert "alert(1)" not in r.text and "onerror" not in r.text
            assert f"/openapi.json?api_key={KEY}" in r.text
            r = c.get(page, params={"api_key": f"{KEY}{evil}"})
            assert r.status_code == 401


def test_readyz_tells_an_anonymous_caller_only_its_status(make_api):
    server = make_api(_prefix("ready"), api_keys=[KEY])
    register_worker(server.settings.redis_url, server.settings.redis_prefix)
    _publish_builtins(server, {"announcer"})
    with httpx.Client(base_url=server.url, timeout=10) as c:
        anonymous = c.get("/readyz")
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "ready"}
        detailed = c.get("/readyz", headers={"x-api-key": KEY}).json()
        assert detailed["status"] == "ready" and detailed["workers"][0]["id"] == "w0"


def test_a_client_dropping_mid_body_is_not_a_500(make_api):
    server = make_api(_prefix("drop"), api_keys=[KEY])
    port = server.settings.port
    for key_header in ("", f"Authorization: Bearer {KEY}\r\n"):
        head = (
            f"POST /synthesize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{key_header}"
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"text": '
        ).encode()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(head)
            time.sleep(0.3)
    time.sleep(0.5)
    with httpx.Client(base_url=server.url, timeout=10) as c:
        metrics = c.get("/metrics", headers={"x-api-key": KEY}).text
    lines = [line for line in metrics.splitlines() if line.startswith("bark_http_requests_total")]
    assert not [line for line in lines if 'status="500"' in line], lines
    assert any('status="499"' in line for line in lines), lines


def test_host_header_allow_list(make_api):
    server = make_api(_prefix("host"))  # no keys: loopback names only
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for host in ("localhost", f"localhost:{server.settings.port}", "127.0.0.1", "[::1]:80"):
            assert c.get("/voices", headers={"host": host}).status_code == 200, host
        r = c.get("/voices", headers={"host": "evil.example"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "host"
        assert c.get("/healthz", headers={"host": "10.1.2.3:8000"}).status_code == 200  # probes
    upgrade = (
        b"GET /ws/synthesize HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    out, _ = _raw(server.settings.port, upgrade)
    assert out.startswith(b"HTTP/1.1 403 "), out[:100]  # the handshake refused
    keyed = make_api(_prefix("hostk"), api_keys=[KEY])  # keys set: any host, unless listed
    listed = make_api(_prefix("hostl"), allowed_hosts=["api.example"])
    with httpx.Client(timeout=10) as c:
        auth = {"host": "evil.example", "x-api-key": KEY}
        assert c.get(f"{keyed.url}/voices", headers=auth).status_code == 200
        assert c.get(f"{listed.url}/voices", headers={"host": "api.example:443"}).status_code == 200
        assert c.get(f"{listed.url}/voices", headers={"host": "localhost"}).status_code == 400


def test_head_is_allowed_on_get_routes(make_api):
    server = make_api(_prefix("head"), api_keys=[KEY])
    with httpx.Client(base_url=server.url, timeout=10) as c:
        get, head = c.get("/healthz"), c.head("/healthz")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == get.headers["content-length"]
        assert c.head("/voices", headers={"x-api-key": KEY}).status_code == 200
        assert c.head("/voices").status_code == 401


def test_embedded_redis_is_bounded_and_never_evicts(tmp_path):
    server = EmbeddedRedis(tmp_path / "r", maxmemory_mb=64)
    url = server.start()
    try:
        config = redis.Redis.from_url(url).config_get("maxmemory*")
        assert int(config["maxmemory"]) == 64 * 1024 * 1024
        assert config["maxmemory-policy"] == "noeviction"
    finally:
        server.stop()
