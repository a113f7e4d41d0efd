"""Docker HEALTHCHECK of the bark-serve image (stdlib only; the image has no curl).

API role: GET http://127.0.0.1:$BARK_PORT/healthz must answer 200 within 3 s.
Worker role: no HTTP server; healthy while the process runs (its liveness is the heartbeat
it keeps in Redis, which the API's /readyz reports).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

WORKER_COMMANDS = {"bark-worker", "bark-tts"}


def container_command() -> list[str]:
    """argv of PID 1 (tini -- CMD...), or [] where /proc is not readable."""
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [Path(arg.decode(errors="replace")).name for arg in raw.split(b"\0") if arg]


def main() -> int:
    if WORKER_COMMANDS & set(container_command()):
        return 0
    port = os.environ.get("BARK_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
