"""Session fixtures shared by every test: the tiny random checkpoint, made once per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may reach the hub: every model is one our checkpoint maker wrote.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The tiny checkpoint's ops are too small to share between threads: on 2 busy cores a
# second intra-op thread made a 2 s synthesis 20x slower (0.7 s -> 14 s). Subprocesses
# (bark-tts, bark-serve) inherit this through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bark_core.maker import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", size="tiny", seed=0)


@pytest.fixture(scope="session")
def pipeline(tiny_checkpoint: Path):  # type: ignore[no-untyped-def]
    from bark_core.pipeline import BarkPipeline

    return BarkPipeline.load(str(tiny_checkpoint))
