"""`bark-serve`: the API, and with no BARK_REDIS_URL an embedded Redis and N local workers.

    bark-serve [--host H] [--port P] [--workers N] [--model ID_OR_DIR]

With the embedded Redis, what belongs to one run (worker registrations, the built-in voices
record that names the model) is cleared at start; uploaded voices and queued jobs persist on
purpose. A worker that cannot load its model with these settings stops bark-serve, which
then exits CONFIG_ERROR (78).

Ctrl-C or SIGTERM drains the API (503 to new syntheses and /readyz; those in flight finish,
up to BARK_DRAIN_TIMEOUT_S), then stops the workers (each finishes its job in hand), then
Redis. A second signal stops the API without waiting; a third exits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

import redis
import uvicorn

from ..api.app import create_app
from ..api.drain import Drain
from ..core.logs import configure_logging
from ..core.model_choice import choose
from ..core.settings import Settings
from ..core.startup import CONFIG_ERROR, settings_or_exit
from ..queue.keys import Keys
from ..queue.registry import forget_all
from .embedded_redis import EmbeddedRedis
from .http_protocol import DenialAwareWSProtocol, guarded_protocol
from .supervisor import WorkerPool

log = logging.getLogger("bark.serve")
# After the drain (app/api/drain.py) nothing is in flight but the last bytes of responses.
SEND_GRACE_S = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bark-serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", help="bind address (BARK_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (BARK_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="local worker processes (BARK_WORKERS)")
    parser.add_argument("--model", help="hub id or checkpoint directory (BARK_MODEL)")
    return parser.parse_args(argv)


def uvicorn_config(app: object, settings: Settings) -> uvicorn.Config:
    """One place for the server's limits, shared by bark-serve and the tests.

    h11 (not httptools): it bounds the request head (`h11_max_incomplete_event_size`);
    app/launch/http_protocol.py adds the head deadline and the connection cap. Behind a proxy
    these still apply per proxy connection; set the proxy's own limits at least as tight.
    """
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        http=guarded_protocol(settings.header_timeout_s, settings.max_connections),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=int(max(1, settings.keep_alive_s)),
        # One more than the connection cap: requests on every accepted connection are served;
        # the bound on tasks (websockets and streams included) is the same.
        limit_concurrency=settings.max_connections + 1,
        ws=DenialAwareWSProtocol,
        ws_max_size=settings.max_ws_message_bytes,
        ws_ping_interval=20.0,
        # Audio frames are PCM noise to zlib: deflate saved ~1% of a 96 KB frame and cost
        # ~4 ms per frame of server CPU (benchmarks/README.md, API overhead).
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=SEND_GRACE_S,
        proxy_headers=False,
        server_header=False,
    )


class _Server(uvicorn.Server):
    """uvicorn re-raises the signal after shutdown, which would kill us before we stop the
    workers and Redis; we install our own handlers instead. A drain, once begun, ends the
    server when nothing is left in flight (checked on uvicorn's 0.1 s tick)."""

    def __init__(self, config: uvicorn.Config, drain: Drain, pool: WorkerPool | None = None) -> None:
        super().__init__(config)
        self.drain = drain
        self.pool = pool

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def on_tick(self, counter: int) -> bool:
        if self.pool is not None and self.pool.failed.is_set():
            self.should_exit = True  # the workers can never start: nothing to serve
        if self.drain.finished():
            if self.drain.active > 0:
                log.warning("drain timed out with %d synthesis(es) in flight", self.drain.active)
            self.should_exit = True
        return await super().on_tick(counter)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = {"host": args.host, "port": args.port, "workers": args.workers, "model": args.model}
    settings = settings_or_exit("bark-serve", **{k: v for k, v in given.items() if v is not None})
    configure_logging(settings.log_level, settings.log_json, "serve", secrets=settings.all_keys)
    redis_server: EmbeddedRedis | None = None
    pool: WorkerPool | None = None
    signals = _Signals(settings.api_drain_s)
    signal.signal(signal.SIGINT, signals.on_signal)
    signal.signal(signal.SIGTERM, signals.on_signal)
    code = 0
    try:
        url = settings.redis_url
        if url is None:
            redis_server = EmbeddedRedis(settings.data_dir / "redis", settings.redis_maxmemory_mb)
            url = redis_server.start()
            _fresh_run_state(url, Keys(settings.redis_prefix))
            pool = _start_workers(settings, url) if settings.workers else None
        else:
            log.info("using external redis; start workers with `bark-worker`")
        app = create_app(settings, url)
        signals.server = _Server(uvicorn_config(app, settings), app.state.bark.drain, pool)
        log.info("serving on http://%s:%d", settings.host, settings.port)
        signals.server.run()
        if pool is not None and pool.failed.is_set():
            code = CONFIG_ERROR
    except KeyboardInterrupt:
        pass
    finally:
        if pool is not None:
            log.info("stopping workers")
            pool.stop()
        if redis_server is not None:
            redis_server.stop()
        log.info("stopped")
    return code


class _Signals:
    """1st signal: drain (503 to new work, in-flight runs finish); 2nd: stop now, letting
    responses being sent finish; 3rd: exit at once. Before the server runs: stop."""

    def __init__(self, drain_s: float) -> None:
        self.drain_s = drain_s
        self.server: _Server | None = None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        server = self.server
        if server is None:
            raise KeyboardInterrupt
        if not server.drain.draining:
            server.drain.begin(self.drain_s)
            active = server.drain.active
            log.info(
                "signal %d: draining %d synthesis(es) in flight (up to %.0f s)", signum, active, self.drain_s
            )
            return
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True
        log.info("signal %d: shutting down", signum)


def _start_workers(settings: Settings, url: str) -> WorkerPool:
    choice = choose(settings.model)  # logs the demo banner when it falls back
    env = {"BARK_REDIS_URL": url, "BARK_MODEL": choice.model}
    if settings.torch_threads is None:
        # N workers share the cores: oversubscribed torch threads spin and crawl.
        # The tiny demo model is all per-op overhead: one thread is ~10x faster.
        threads = 1 if choice.demo else max(1, (os.cpu_count() or 1) // settings.workers)
        env["BARK_TORCH_THREADS"] = str(threads)
    pool = WorkerPool(settings.workers, env, settings.worker_drain_s)
    pool.start()
    return pool


def _fresh_run_state(url: str, keys: Keys) -> None:
    """The embedded Redis is ours: no worker of an earlier run is alive, and the record of
    the model and its voices is the next worker's to write."""
    client = redis.Redis.from_url(url)
    try:
        forgotten = forget_all(client, keys)
        client.delete(keys.builtin_voices)
    finally:
        client.close()
    if forgotten:
        log.info("forgot %d worker registration(s) of an earlier run", forgotten)


if __name__ == "__main__":
    sys.exit(main())
