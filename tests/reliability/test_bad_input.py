"""Bad input at the edge: schemathesis over the whole OpenAPI schema (negative data too),
oversized bodies and websocket messages, foreign Origins, and missing API keys."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, WebSocketRoute
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from app.api.errors import flat_routes

from .reliability_kit import new_prefix, record

HERE = Path(__file__).resolve().parent
FUZZ_SECONDS = 60  # schemathesis's whole run (coverage, fuzzing, stateful phases)
FUZZ_SEED = int(os.environ.get("BARK_FUZZ_SEED", "2"))
MAX_EXAMPLES = 15  # per operation and phase


def test_schemathesis_finds_nothing(make_api, workers, tmp_path):
    pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")
    exe = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    # A short server-side cap keeps the fuzzer's long texts quick on the tiny model.
    api = make_api(max_duration_s=0.1)
    argv = [
        exe,
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{api.url}/openapi.json",
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(FUZZ_SEED),
        "--workers",
        "1",
        "--max-time",
        str(FUZZ_SECONDS),
        "--request-timeout",
        "60",
        "--no-color",
    ]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=FUZZ_SECONDS + 120)
    summary = [line for line in result.stdout.splitlines() if "generated" in line or "passed" in line]
    generated, passed = _cases(result.stdout)
    # The fuzzing phase alone asks for MAX_EXAMPLES cases of every operation: fewer means the
    # time budget cut the run short, or operations were never reached.
    floor = MAX_EXAMPLES * len(_operations(api.app))
    record(
        "schemathesis",
        seed=FUZZ_SEED,
        exit_code=result.returncode,
        summary=summary[-2:],
        cases_generated=generated,
        cases_passed=passed,
        cases_floor=floor,
    )
    failures = result.stdout.split("= FAILURES =")[-1] if "= FAILURES =" in result.stdout else ""
    assert result.returncode == 0, (failures or result.stdout)[:8000] + result.stderr[-2000:]
    assert generated >= floor, f"{generated} cases generated, at least {floor} expected: {summary}"
    assert passed == generated, summary


def _cases(stdout: str) -> tuple[int, int]:
    """The run's test-case counts, from its 'N generated, M passed' line (0, 0 without one)."""
    totals = re.findall(r"(\d+) generated, (\d+) passed", stdout)
    return (int(totals[-1][0]), int(totals[-1][1])) if totals else (0, 0)


def _operations(app) -> list[tuple[str, str]]:
    """(method, path) of every operation the published schema lists."""
    paths = app.openapi()["paths"]
    return [(method, path) for path, item in paths.items() for method in item if method != "parameters"]


# --- sizes -------------------------------------------------------------------------------


def test_oversized_bodies_get_413(make_api):
    api = make_api(new_prefix("big"), max_body_bytes=4096, max_upload_bytes=8192)
    big = json.dumps({"text": "x" * 5000}).encode()

    def chunked():  # no Content-Length: the limit must hold while reading
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    with httpx.Client(base_url=api.url, timeout=10) as http:
        declared = http.post("/synthesize", content=big, headers={"content-type": "application/json"})
        streamed = http.post("/synthesize", content=chunked(), headers={"content-type": "application/json"})
        upload = http.post("/voices", data={"id": "big"}, files={"file": ("p.npz", b"\0" * 9000)})
        speech = http.post("/v1/audio/speech", content=big, headers={"content-type": "application/json"})
    for r in (declared, streamed, upload, speech):
        assert r.status_code == 413, r.text
        assert r.json()["error"]["type"] == "payload_too_large"
    assert "transfer-encoding" in streamed.request.headers  # really sent without a length


def test_oversized_websocket_message_closes_1009(make_api):
    api = make_api(new_prefix("wsbig"), max_ws_message_bytes=2048)
    with connect(f"{api.ws_url}/ws/synthesize") as ws:
        ws.send(json.dumps({"text": "x" * 4000}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# --- origins and keys ------------------------------------------------------------------------


def _ws_status(url: str, **kwargs) -> int:
    """101 when the handshake is accepted, else the HTTP status it was refused with."""
    try:
        with connect(f"{url}/ws/synthesize", open_timeout=10, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_websocket_origin_allow_list(make_api):
    api = make_api(new_prefix("origin"), ws_origins=["https://app.example"])
    assert _ws_status(api.ws_url, origin="https://evil.example") == 403
    assert _ws_status(api.ws_url, origin="http://127.0.0.1.evil.example") == 403
    assert _ws_status(api.ws_url, origin="https://app.example") == 101
    assert _ws_status(api.ws_url) == 101  # no Origin: not a browser


KEY = "correct-horse-battery-staple"
OPEN_ROUTES = {"/healthz", "/readyz"}  # health: for probes, never behind a key
# The playground page and its assets hold no data and must load before a key is typed in.
STATIC = {"/", "/static"}


def _routes(app) -> list[tuple[str, str]]:
    """(method, concrete path) of every HTTP route, and ("WS", path) of every websocket."""
    out = []
    for route in flat_routes(app.routes):
        path = getattr(route, "path", "")
        concrete = path.replace("{voice_id}", "some-voice").replace("{voice_id:path}", "some-voice")
        if isinstance(route, WebSocketRoute):
            out.append(("WS", concrete))
        elif isinstance(route, Mount) or path in STATIC:
            continue
        else:
            methods = sorted(getattr(route, "methods", None) or {"GET"})
            out.extend((m, concrete) for m in methods if m != "HEAD")
    return out


def test_with_keys_every_route_but_health_needs_one(make_api):
    api = make_api(new_prefix("keys"), api_keys=[KEY, "second-key"])
    routes = _routes(api.app)
    assert {p for _, p in routes} >= {
        "/synthesize",
        "/v1/audio/speech",
        "/voices",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/ws/synthesize",
    }
    assert any(isinstance(r, APIRoute) for r in flat_routes(api.app.routes))
    refused, opened = [], []
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for method, path in routes:
            if method == "WS":
                no_key = _ws_status(api.ws_url)
                wrong = _ws_status(api.ws_url, additional_headers={"Authorization": "Bearer nope"})
                good = _ws_status(f"{api.ws_url}", additional_headers={"X-API-Key": KEY})
            else:
                no_key = http.request(method, path).status_code
                wrong = http.request(method, path, headers={"Authorization": "Bearer nope"}).status_code
                good = http.request(method, path, headers={"Authorization": f"Bearer {KEY}"}).status_code
            if path in OPEN_ROUTES:
                opened.append(path)
                assert 401 not in (no_key, wrong), (method, path)
            else:
                refused.append(f"{method} {path}")
                assert (no_key, wrong) == (401, 401), (method, path, no_key, wrong)
                assert good != 401, (method, path)
        docs = http.get("/docs", params={"api_key": KEY})
        assert docs.status_code == 200 and f"api_key={KEY}" in docs.text  # the page can fetch it
    record("api_keys", routes_refused_without_key=len(refused), open=sorted(set(opened)), refused=refused)
