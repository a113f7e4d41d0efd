"""Fixtures of the reliability suite, built on tests/support (real redis-server, uvicorn on
loopback, `python -m app.worker.main` subprocesses on the tiny checkpoint)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import LiveServer, Workers, make_settings, running_redis, running_workers

SHARED_PREFIX = "rel"
# Workers of this suite honour fault markers (app/worker/faults.py): only test_poison uses them.
FAULTS = {"BARK_FAULT_INJECTION": "true"}


@pytest.fixture(scope="session")
def rel_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # not tests/app's server: this suite kills and restarts its own
    yield from running_redis(tmp_path_factory.mktemp("rel-redis"))


@pytest.fixture(scope="session")
def shared_workers(
    rel_redis: str, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """Two workers most tests share (each test brings its own API and settings)."""
    yield from running_workers(
        rel_redis, SHARED_PREFIX, tiny_checkpoint, tmp_path_factory.mktemp("rel-worker-logs"), **FAULTS
    )


@pytest.fixture
def workers(shared_workers: Workers) -> Workers:
    shared_workers.ensure(2)  # a test before may have killed some
    return shared_workers


@pytest.fixture
def make_api(rel_redis: str) -> Iterator[Callable[..., LiveServer]]:
    """An API server in a thread with its own settings; on the shared prefix by default."""
    with ExitStack() as stack:

        def make(prefix: str = SHARED_PREFIX, **overrides: Any) -> LiveServer:
            url = overrides.pop("redis_url", rel_redis)
            return stack.enter_context(LiveServer(make_settings(url, prefix, **overrides)))

        yield make


@pytest.fixture
def make_workers(rel_redis: str, tiny_checkpoint: Path, tmp_path: Path) -> Iterator[Callable[..., Workers]]:
    """A pool of its own (prefix, env), stopped after the test."""
    pools: list[Workers] = []

    def make(prefix: str, n: int, redis_url: str | None = None, **env: str) -> Workers:
        log_dir = tmp_path / f"workers-{len(pools)}"
        log_dir.mkdir()
        pool = Workers(redis_url or rel_redis, prefix, tiny_checkpoint, log_dir, **env)
        pools.append(pool)
        pool.start(n)
        return pool

    yield make
    for pool in pools:
        pool.stop()
