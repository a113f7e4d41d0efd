"""Which model to serve when none is configured: real Bark if the hub answers, else the demo.

Torch-free (the API process and `bark-serve` itself run this); making the demo checkpoint
needs torch, so callers without it run `python -m app.worker.demo_checkpoint`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

from bark_core.hub import DEFAULT_MODEL, hub_offline

log = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 2.0

DEMO_BANNER = (
    "NO MODEL CONFIGURED AND THE HUGGING FACE HUB IS UNREACHABLE: serving the built-in tiny "
    "checkpoint with RANDOM weights. Its audio is NOISE. Set BARK_MODEL (or --model) to a "
    "real Bark checkpoint (hub id or directory) for speech."
)


def random_weights_warning(model: str | None) -> str:
    """What the worker logs, and /voices and /readyz say, when the served model is random.

    Worded by what is known, not by how the model was chosen: BARK_MODEL may name a random
    checkpoint on purpose (tests, benchmarks), and the hub may be reachable.
    """
    return (
        f"the model {model} has RANDOM weights (a checkpoint made by bark_core's checkpoint "
        "maker): its audio is NOISE. Set BARK_MODEL (or --model) to a real Bark checkpoint "
        "(hub id or directory) for speech."
    )


@dataclass(frozen=True)
class ModelChoice:
    model: str
    demo: bool  # the built-in random checkpoint


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """A short HEAD to the hub's model API, honouring HF_HUB_OFFLINE and HF_ENDPOINT."""
    if hub_offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    request = urllib.request.Request(f"{endpoint}/api/models/{DEFAULT_MODEL}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500  # the hub answered (e.g. 401 behind a token wall)
    except (OSError, ValueError):
        return False


def choose(configured: str | None) -> ModelChoice:
    """BARK_MODEL when set; else suno/bark-small if the hub answers; else the demo checkpoint."""
    if configured:
        return ModelChoice(configured, demo=False)
    if hub_reachable():
        return ModelChoice(DEFAULT_MODEL, demo=False)
    log.warning(DEMO_BANNER)
    return ModelChoice(make_demo_checkpoint(), demo=True)


def make_demo_checkpoint() -> str:
    """The demo checkpoint's directory, made (once) in a child so this process stays torch-free."""
    result = subprocess.run(
        [sys.executable, "-m", "app.worker.demo_checkpoint"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.stdout.strip().splitlines()[-1]
