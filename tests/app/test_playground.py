"""The playground page at / in real headless Chromium against a real `bark-serve`.

`bark-serve --workers 1 --model <tiny checkpoint>` runs as a subprocess with no BARK_REDIS_URL,
so it embeds Redis and one worker, exactly as a user starts it. Chromium (Debian's
`chromium` package) is driven over the DevTools protocol by tests/browser/cdp.py. The tests
read the state the page's JS mirrors on <main id="app" data-state=... data-bytes=...>.

Skips only when no Chromium binary is installed (set BARK_REQUIRE_BROWSER=1 to fail instead).
The done-state screenshot is saved to artifacts/playground.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cdp import Chromium, Page, find_chromium

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "artifacts" / "playground.png"
READY_TIMEOUT_S = 180.0
SYNTH_TIMEOUT_S = 180.0


# --- fixtures: a browser binary, a real server, a browser process ----------------------------


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        reason = "no Chromium binary (apt-get install chromium, or set BARK_CHROMIUM)"
        if os.environ.get("BARK_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; BARK_REQUIRE_BROWSER=1 forbids skipping")
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""


@pytest.fixture(scope="module")
def served(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    exe = Path(sys.executable).with_name("bark-serve")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "app.launch.serve"]
    port = _free_port()
    work = tmp_path_factory.mktemp("playground-serve")
    env = {k: v for k, v in os.environ.items() if k not in ("BARK_REDIS_URL", "BARK_API_KEYS")}
    env.update(BARK_DATA_DIR=str(work / "data"), HF_HUB_OFFLINE="1")
    log = work / "bark-serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port), "--workers", "1", "--model", str(tiny_checkpoint)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Served(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"bark-serve exited with {proc.returncode}:\n{server.log_tail()}")
            with httpx.Client(timeout=2) as client:
                try:
                    if client.get(f"{server.url}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"bark-serve not ready in {READY_TIMEOUT_S} s:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Chromium]:
    with Chromium(chromium_path) as chromium:
        yield chromium


def run_page(browser: Chromium, served: Served, scenario: Callable[[Page], Awaitable[None]]) -> None:
    """Open / in a fresh tab and run the scenario; on failure, show the page's console too."""

    async def main() -> None:
        async with browser.page() as page:
            try:
                await page.goto(f"{served.url}/")
                await scenario(page)
            except BaseException as exc:
                console = "\n".join(page.console()[-30:])
                state = await _safe_state(page)
                raise AssertionError(
                    f"{exc}\n--- page state: {state}\n--- console:\n{console}\n"
                    f"--- bark-serve log:\n{served.log_tail(2500)}"
                ) from exc
            assert page.exceptions() == [], page.exceptions()

    asyncio.run(main())


async def _safe_state(page: Page) -> object:
    try:
        return await page.evaluate(
            "({...document.getElementById('app').dataset,"
            " status: document.getElementById('status').textContent,"
            " error: document.getElementById('error').textContent})"
        )
    except Exception as exc:
        return f"unavailable: {exc}"


async def set_value(page: Page, selector: str, value: str) -> None:
    """Set a control's value the way typing would, with input and change events."""
    await page.evaluate(
        f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
        f" el.value = {json.dumps(value)};"
        " el.dispatchEvent(new Event('input', {bubbles: true}));"
        " el.dispatchEvent(new Event('change', {bubbles: true})); })()"
    )


async def record_states(page: Page) -> None:
    """Keep every data-state the page goes through in window.__states."""
    await page.evaluate(
        "(() => { window.__states = [];"
        " const app = document.getElementById('app');"
        " new MutationObserver(() => { const s = app.dataset.state;"
        "   if (window.__states.at(-1) !== s) window.__states.push(s); })"
        "   .observe(app, {attributes: true, attributeFilter: ['data-state']}); })()"
    )


async def wait_voices(page: Page) -> None:
    await page.wait_for("document.getElementById('app').dataset.voices === 'loaded'", 30)


async def wait_terminal(page: Page, timeout: float = SYNTH_TIMEOUT_S) -> str:
    state: str = await page.wait_for(
        "['done', 'error', 'cancelled'].includes(document.getElementById('app').dataset.state)"
        " && document.getElementById('app').dataset.state",
        timeout,
    )
    return state


# --- tests ----------------------------------------------------------------------------------


def test_page_speaks_streams_and_reaches_done(browser: Chromium, served: Served) -> None:
    async def scenario(page: Page) -> None:
        await wait_voices(page)
        voices = await page.evaluate(
            "({count: Number(document.getElementById('app').dataset.voiceCount),"
            " groups: [...document.querySelectorAll('#voice optgroup')].map(g => g.label),"
            " banner: !document.getElementById('demo-banner').hidden,"
            " bannerText: document.getElementById('demo-banner').textContent,"
            " model: document.getElementById('model-name').textContent})"
        )
        assert voices["count"] > 0, voices
        assert "English" in voices["groups"], voices
        assert voices["banner"], "the random-weight demo banner is not shown"
        assert "RANDOM" in voices["bannerText"], voices["bannerText"]

        await set_value(page, "#text", "Hello there.")
        await set_value(page, "#voice", "v2/en_speaker_1")
        await set_value(page, "#seed", "7")
        await set_value(page, "#max_duration_s", "0.5")
        count = await page.evaluate("document.getElementById('count').textContent")
        assert count == "12 / 4096"

        await record_states(page)
        await page.click("#speak")
        state = await wait_terminal(page)
        assert state == "done", await _safe_state(page)

        result = await page.evaluate(
            "(async () => { const app = document.getElementById('app').dataset;"
            " const a = document.getElementById('download');"
            " const wav = new Uint8Array(await (await fetch(a.href)).arrayBuffer());"
            " return {bytes: Number(app.bytes), chunks: Number(app.chunks), playback: app.playback,"
            "  states: window.__states, seed: document.getElementById('stat-seed').textContent,"
            "  status: document.getElementById('status').textContent,"
            "  download: a.getAttribute('aria-disabled'), name: a.download,"
            "  wavSize: wav.length, riff: String.fromCharCode(...wav.slice(0, 4)),"
            "  wave: String.fromCharCode(...wav.slice(8, 12))}; })()"
        )
        assert result["bytes"] > 0 and result["chunks"] >= 1, result
        assert result["seed"] == "7", result
        # Played as it streamed: queued -> ... -> streaming (a chunk scheduled) -> done.
        assert result["states"][0] == "connecting" and result["states"][-1] == "done", result
        assert "queued" in result["states"] and "streaming" in result["states"], result
        assert result["playback"] in ("playing", "ended"), result  # Web Audio took the chunks
        assert result["status"].startswith("Done"), result
        # The client-side WAV: 44-byte header + exactly the PCM received.
        assert result["download"] == "false" and result["name"] == "bark-7.wav", result
        assert (result["riff"], result["wave"]) == ("RIFF", "WAVE"), result
        assert result["wavSize"] == 44 + result["bytes"] - result["bytes"] % 2, result
        await page.screenshot(SCREENSHOT)

    run_page(browser, served, scenario)
    assert SCREENSHOT.stat().st_size > 10_000


def test_unknown_voice_shows_the_error_json_as_a_message(browser: Chromium, served: Served) -> None:
    async def scenario(page: Page) -> None:
        await wait_voices(page)
        await page.evaluate("document.getElementById('voice').append(new Option('gone', 'v2/no_such_voice'))")
        await set_value(page, "#voice", "v2/no_such_voice")
        await set_value(page, "#text", "Hi.")
        await page.click("#speak")
        assert await wait_terminal(page, 30) == "error"
        error = await page.evaluate(
            "({visible: !document.getElementById('error').hidden,"
            " text: document.getElementById('error').textContent,"
            " invalid: document.getElementById('voice').getAttribute('aria-invalid'),"
            " speak: document.getElementById('speak').disabled})"
        )
        assert error["visible"], error
        assert "Unknown voice" in error["text"] and "unknown_voice" in error["text"], error
        assert "code 404" in error["text"] and error["invalid"] == "true", error
        assert error["speak"] is False, "Speak must be usable again after an error"

    run_page(browser, served, scenario)


def test_cancel_stops_the_job(browser: Chromium, served: Served) -> None:
    async def scenario(page: Page) -> None:
        await wait_voices(page)
        await set_value(page, "#text", "One sentence here. Another one follows. And a third one.")
        await set_value(page, "#max_duration_s", "0.5")
        await page.click("#speak")
        await page.wait_for(
            "['queued', 'generating', 'streaming'].includes(document.getElementById('app').dataset.state)",
            30,
        )
        await page.click("#cancel")
        assert await wait_terminal(page, 30) == "cancelled"
        status = await page.evaluate("document.getElementById('status').textContent")
        assert status == "Cancelled."

    run_page(browser, served, scenario)


def test_static_assets_need_no_network(served: Served) -> None:
    """Everything the page loads comes from this server: no CDN, no web fonts."""
    with httpx.Client(base_url=served.url, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for asset in ("static/app.js", "static/style.css"):
            assert client.get(f"/{asset}").status_code == 200
            assert asset in page.text
        for text in (page.text, client.get("/static/style.css").text, client.get("/static/app.js").text):
            assert "http://" not in text and "https://" not in text
            assert "@import" not in text and "@font-face" not in text


def test_api_key_is_asked_for_kept_and_sent(
    browser: Chromium, make_api: Callable[..., Any], workers: Any
) -> None:
    """On a server with keys: a clear 401 message, then the stored key lists voices and speaks."""
    workers.ensure(1)
    # An API with keys on the session workers' prefix (tests/app/conftest.py's `workers`).
    keyed = make_api(workers.env["BARK_REDIS_PREFIX"], api_keys=["sesame-123"])
    served = Served(keyed.url, Path("/nonexistent"))

    async def scenario(page: Page) -> None:
        await page.wait_for("document.getElementById('app').dataset.voices === 'error'", 30)
        before = await page.evaluate(
            "({error: document.getElementById('load-error').textContent,"
            " open: document.getElementById('settings').open})"
        )
        assert "needs an API key" in before["error"] and before["open"], before

        await set_value(page, "#api-key", "sesame-123")
        await wait_voices(page)
        await page.goto(f"{keyed.url}/")  # the key survives a reload (localStorage)
        await wait_voices(page)
        assert await page.evaluate("document.getElementById('api-key').value") == "sesame-123"

        await set_value(page, "#text", "Key test.")
        await page.click("#speak")  # the websocket carries the key as ?api_key=
        assert await wait_terminal(page) == "done", await _safe_state(page)
        await page.evaluate("localStorage.clear()")

    run_page(browser, served, scenario)
