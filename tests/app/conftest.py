"""Session-wide real parts: one embedded redis-server, two workers, one API server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import LiveServer, Workers, make_settings, running_redis, running_workers

E2E_PREFIX = "e2e"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from running_redis(tmp_path_factory.mktemp("redis-data"))


@pytest.fixture(scope="session")
def workers(
    redis_url: str, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    yield from running_workers(redis_url, E2E_PREFIX, tiny_checkpoint, tmp_path_factory.mktemp("worker-logs"))


@pytest.fixture(scope="session")
def api(redis_url: str, workers: Workers) -> Iterator[LiveServer]:
    with LiveServer(make_settings(redis_url, E2E_PREFIX)) as server:
        yield server


@pytest.fixture
def client(api: LiveServer, workers: Workers) -> Iterator[httpx.Client]:
    workers.ensure(2)
    with httpx.Client(base_url=api.url, timeout=60) as c:
        yield c


@pytest.fixture
def make_api(redis_url: str) -> Iterator[Callable[..., LiveServer]]:
    """An API server with its own settings (and, by default, its own empty key prefix)."""
    with ExitStack() as stack:

        def make(prefix: str, **overrides: Any) -> LiveServer:
            url = overrides.pop("redis_url", redis_url)
            return stack.enter_context(LiveServer(make_settings(url, prefix, **overrides)))

        yield make
