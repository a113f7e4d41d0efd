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
    # Where CI requires bark 0.1.5 or the real presets (.ci/run), the run stops here without
    # them: the tests that use them would otherwise skip, and a skip looks green.
    from tests.support.required import required_but_missing

    missing = required_but_missing()
    if missing:
        raise pytest.UsageError("; ".join(missing))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bark_core.maker import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", size="tiny", seed=0)


@pytest.fixture(scope="session")
def pipeline(tiny_checkpoint: Path):  # type: ignore[no-untyped-def]
    from bark_core.pipeline import BarkPipeline

    return BarkPipeline.load(str(tiny_checkpoint))


# Fixtures that start worker processes, a browser or a server subprocess: a test using one is
# a service test, left out of `make test-fast` (`-m "not service"`).
_SERVICE_FIXTURES = frozenset(
    {"api", "client", "workers", "make_api", "make_workers", "shared_workers", "browser"}
)
_SERVICE_SUITES = ("reliability", "deploy")
# modules that run the console scripts (bark-tts, bark-serve) or a browser as subprocesses
_SERVICE_MODULES = frozenset({"test_cli.py", "test_serve_cli.py", "test_playground.py", "test_processes.py"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        fixtures = set(getattr(item, "fixturenames", ()))
        by_place = path.parent.name in _SERVICE_SUITES or path.name in _SERVICE_MODULES
        if by_place or fixtures & _SERVICE_FIXTURES:
            item.add_marker(pytest.mark.service)
