"""Child processes that cannot outlive `bark-serve`: started in their own session (so a
terminal's Ctrl-C reaches only the parent, which then stops them in order), and with
PR_SET_PDEATHSIG on Linux, so even a SIGKILLed parent takes them down.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    argv: Sequence[str], env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # type: ignore[call-overload]
        list(argv),
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent,
        **kwargs,
    )


def stop(proc: subprocess.Popen[bytes], name: str, grace_s: float, *, signalled: bool = False) -> None:
    """SIGTERM (unless `signalled` already: a second one means "now"), wait up to `grace_s`,
    then SIGKILL. Always reaps."""
    if proc.poll() is not None:
        return
    if not signalled:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) did not stop in %.0f s; killing it", name, proc.pid, grace_s)
        proc.kill()
        proc.wait()


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env
