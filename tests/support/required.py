"""Optional test inputs that CI guarantees: where CI sets `BARK_REQUIRE_<X>=1` (.ci/run), a
missing input fails the test instead of skipping it, so a green CI run cannot hide a skip."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]  # not from .servers: pytest_configure imports this
ORIGINAL_ENV = "BARK_REQUIRE_ORIGINAL"  # suno-ai/bark 0.1.5, the parity tests' ground truth
ORIGINAL_VERSION = "0.1.5"
PRESETS_ENV = "BARK_REQUIRE_PRESETS"  # the 130 real v2 presets beside the clone
PRESETS_DIR = REPO.parent / "shared" / "voices" / "v2"
N_PRESETS = 130


def skip_or_fail(env: str, reason: str) -> NoReturn:
    """Skip for `reason`; fail instead where `env` is 1."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{env}=1 forbids skipping: {reason}")
    pytest.skip(reason)


def original_missing() -> str | None:
    """Why bark 0.1.5 (with funcy, which it imports) cannot be used here, or None."""
    try:
        version = importlib.metadata.version("bark")
        importlib.metadata.version("funcy")
    except importlib.metadata.PackageNotFoundError as exc:
        return f"{exc.name} is not installed (make install adds bark=={ORIGINAL_VERSION} without deps)"
    if version != ORIGINAL_VERSION:
        return f"bark {version} is installed, the parity tests need {ORIGINAL_VERSION}"
    return None


def presets_missing(directory: Path = PRESETS_DIR) -> str | None:
    """Why the real presets are not usable at `directory`, or None."""
    found = len(list(directory.glob("*.npz"))) if directory.is_dir() else 0
    if found != N_PRESETS:
        return f"{N_PRESETS} real v2 presets expected at {directory}, found {found}"
    return None


def required_but_missing() -> list[str]:
    """What CI said it has (its BARK_REQUIRE_* variables) and this checkout lacks."""
    checks = {ORIGINAL_ENV: original_missing, PRESETS_ENV: presets_missing}
    return [
        f"{env}=1 but {why}"
        for env, check in checks.items()
        if os.environ.get(env) == "1" and (why := check())
    ]
