"""Drive Debian's headless Chromium over the DevTools protocol with `websockets` (a dev dep).

No Playwright or Selenium: Chromium (`apt-get install chromium`) is the only extra piece.
`Chromium` starts the browser on a fresh profile; `Chromium.page()` opens a tab and yields a
`Page` with the handful of verbs a page test needs: goto, evaluate, wait_for, click (real
mouse events, so the page gets a user gesture and may start audio), screenshot. Console
messages and uncaught exceptions are kept for assertions and failure messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import websockets

# The flags this machine's network needs (no background fetches, no QUIC), plus audio that
# may start without a gesture as a fallback, on a throwaway profile.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    """$BARK_CHROMIUM, else the first Chromium on PATH."""
    configured = os.environ.get("BARK_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CdpError(RuntimeError):
    pass


class Chromium:
    """One headless browser process on a fresh --user-data-dir."""

    def __init__(self, executable: str, start_timeout_s: float = 30.0) -> None:
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self.profile = Path(tempfile.mkdtemp(prefix="bark-chromium-"))
        self.log_path = self.profile / "chromium.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws_url = ""

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited with {self.proc.returncode}:\n{self.log_tail()}")
            lines = port_file.read_text().split("\n") if port_file.is_file() else []
            if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
                self.ws_url = f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
                return
            time.sleep(0.05)
        self.stop()
        raise CdpError(f"chromium did not open its DevTools port in {self.start_timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    @contextlib.asynccontextmanager
    async def page(self, width: int = 1280, height: int = 1000) -> AsyncIterator[Page]:
        async with websockets.connect(self.ws_url, max_size=None, open_timeout=10) as ws:
            conn = _Connection(ws)
            reader = asyncio.create_task(conn.read_forever())
            try:
                target = await conn.send("Target.createTarget", url="about:blank")
                attached = await conn.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
                page = Page(conn, attached["sessionId"])
                for domain in ("Page", "Runtime", "Log"):
                    await page.send(f"{domain}.enable")
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
                with contextlib.suppress(CdpError, websockets.ConnectionClosed):
                    await conn.send("Target.closeTarget", targetId=target["targetId"])
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await reader


class _Connection:
    """Request ids, replies matched to their futures, events handed to their session's page."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.listeners: dict[str, list[dict[str, Any]]] = {}

    async def send(
        self, method: str, session: str | None = None, timeout: float = 30.0, **params: Any
    ) -> dict[str, Any]:
        msg_id = next(self.ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        await self.ws.send(json.dumps(message))
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(msg_id, None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def read_forever(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            future = self.pending.get(message.get("id", -1))
            if future is not None and not future.done():
                future.set_result(message)
            elif "method" in message:
                self.listeners.setdefault(message.get("sessionId", ""), []).append(message)


class Page:
    def __init__(self, conn: _Connection, session: str) -> None:
        self.conn = conn
        self.session = session

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.conn.send(method, self.session, **params)

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.conn.listeners.setdefault(self.session, [])

    def console(self) -> list[str]:
        """Console calls, log entries and uncaught exceptions, as one line each."""
        lines = []
        for ev in self.events:
            params = ev.get("params", {})
            if ev["method"] == "Runtime.consoleAPICalled":
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
                lines.append(f"console.{params['type']}: {args}")
            elif ev["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                lines.append(f"exception: {text}")
            elif ev["method"] == "Log.entryAdded":
                entry = params["entry"]
                lines.append(f"log.{entry['level']}: {entry['text']} {entry.get('url', '')}".rstrip())
        return lines

    def exceptions(self) -> list[str]:
        return [line for line in self.console() if line.startswith("exception:")]

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        result = await self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CdpError(f"navigating to {url}: {result['errorText']}")
        await self.wait_for("document.readyState === 'complete'", timeout)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"evaluating {expression!r}: {text}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0, poll_s: float = 0.1) -> Any:
        """Poll until the expression is truthy; its value. On time-out, say what it was."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(poll_s)
        raise TimeoutError(f"{expression!r} still {value!r} after {timeout} s")

    async def click(self, selector: str) -> None:
        """A real left click at the element's centre (a user gesture, unlike element.click())."""
        box = await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return null; el.scrollIntoView({block: 'center'});"
            " const r = el.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        if box is None:
            raise CdpError(f"no element matches {selector!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1
            )

    async def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        result = await self.send("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path
