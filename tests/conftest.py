"""Session fixtures shared by every test: the tiny random checkpoint, made once per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may reach the hub: every model is one our checkpoint maker wrote.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bark_core.maker import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", size="tiny", seed=0)


@pytest.fixture(scope="session")
def pipeline(tiny_checkpoint: Path):  # type: ignore[no-untyped-def]
    from bark_core.pipeline import BarkPipeline

    return BarkPipeline.load(str(tiny_checkpoint))
