"""`bark-worker`: load the model once, then consume jobs until SIGTERM/SIGINT.

The first signal finishes the job(s) in hand and exits; a second one exits at once. A model
that cannot be loaded, or a precision the device lacks, exits CONFIG_ERROR (78) after one
line naming the setting: `bark-serve` does not restart such a worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import sys
from types import FrameType
from typing import TYPE_CHECKING

import redis

from bark_core.errors import CheckpointError, InvalidParameterError, ModelNotFoundError

from ..core.logs import configure_logging
from ..core.model_choice import choose, random_weights_warning
from ..core.settings import Settings
from ..core.startup import CONFIG_ERROR, env_name, settings_or_exit
from ..queue.connection import sync_client
from ..queue.consumer import Consumer
from ..queue.keys import Keys
from ..queue.registry import Heartbeat
from ..queue.wire import BuiltinVoices
from .active import ActiveJobs
from .background import LoadingBeat
from .batch import BatchRunner, DeviceFailure
from .faults import Faults
from .loop import Worker
from .voice_cache import VoiceCache

if TYPE_CHECKING:
    from bark_core.pipeline import BarkPipeline

log = logging.getLogger("bark.worker")
# A broken accelerator context: the process must go (the supervisor or Kubernetes restarts it).
EXIT_DEVICE_FAILED = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bark-worker", description=__doc__)
    parser.add_argument("--model", help="hub id or checkpoint directory (BARK_MODEL)")
    parser.add_argument("--redis-url", help="Redis URL (BARK_REDIS_URL)")
    parser.add_argument("--device", help="cpu, cuda or auto (BARK_DEVICE)")
    parser.add_argument("--dtype", help="float32, bfloat16, float16, int8 or auto (BARK_DTYPE)")
    parser.add_argument("--batch-size", type=int, help="jobs per batch (BARK_BATCH_SIZE)")
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    given = {
        "model": args.model,
        "redis_url": args.redis_url,
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
    }
    return settings_or_exit("bark-worker", **{k: v for k, v in given.items() if v is not None})


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def load_pipeline(settings: Settings, heartbeat: Heartbeat) -> BarkPipeline:
    """The model, loaded once (the heartbeat says `loading` meanwhile)."""
    choice = choose(settings.model)
    import torch

    from bark_core.pipeline import BarkPipeline

    from .quality import install_checks

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = _device(settings.device)
    heartbeat.update(model=choice.model, device=device, dtype=settings.dtype, batch_size=settings.batch_size)
    pipe = BarkPipeline.load(
        choice.model,
        revision=settings.revision,
        device=device,
        dtype=settings.dtype,
        offload=settings.offload,
        pack=settings.cpu_packing,
        cuda_graphs=settings.cuda_graphs,
        cudnn_sdpa=settings.cudnn_sdpa,
    )
    pipe.chunk_target_s = settings.chunk_target_s
    pipe.first_chunk_s = settings.first_chunk_s or None
    checks = install_checks(settings, pipe)
    if pipe.is_random_demo:
        log.warning(random_weights_warning(pipe.model_name).upper())
    # `auto` is resolved by the pipeline: publish what it chose
    heartbeat.update(
        model=pipe.model_name, dtype=pipe.dtype, is_random_demo=pipe.is_random_demo, checks=checks
    )
    return pipe


# What no restart can fix: the checkpoint is absent or malformed, or the precision or device
# does not exist here (bark_core's typed errors, raised before any job is taken).
_CONFIG_ERRORS = (ModelNotFoundError, CheckpointError, InvalidParameterError)


def config_error_line(settings: Settings, exc: Exception) -> str:
    """One line naming the setting at fault and its value."""
    field = getattr(exc, "param", None) if isinstance(exc, InvalidParameterError) else "model"
    value = getattr(settings, field or "model", None)
    return f"cannot start: {env_name(field)}={value}: {exc}"


def build_worker(
    settings: Settings, client: redis.Redis, keys: Keys, heartbeat: Heartbeat, pipe: BarkPipeline
) -> Worker:
    builtin = BuiltinVoices(pipe.model_name, pipe.is_random_demo, frozenset(v.id for v in pipe.voices.list()))
    client.set(keys.builtin_voices, builtin.to_json())
    consumer = Consumer(
        client,
        keys,
        heartbeat.worker_id,
        claim_idle_ms=int(settings.claim_idle_s * 1000),
        job_ttl_s=settings.job_ttl_s,
        stream_ttl_s=int(settings.request_timeout_s + settings.job_ttl_s),
        fair_window=settings.fair_window,
    )
    voices = VoiceCache(client, keys, pipe.voices, pipe.model_name)
    active = ActiveJobs()
    faults = Faults(settings.fault_injection)
    runner = BatchRunner(
        pipe,
        consumer,
        voices,
        active,
        heartbeat.worker_id,
        faults,
        rows_per_request=settings.rows_per_request,
    )
    return Worker(
        consumer,
        runner,
        heartbeat,
        active,
        batch_size=settings.batch_size,
        max_deliveries=settings.max_deliveries,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        claim_idle_s=settings.claim_idle_s,
    )


def main(argv: list[str] | None = None) -> int:
    settings = _settings(parse_args(argv))
    configure_logging(settings.log_level, settings.log_json, "worker")
    if settings.redis_url is None:
        log.error("BARK_REDIS_URL is not set (bark-serve sets it for its own workers)")
        return 2
    worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    keys = Keys(settings.redis_prefix)
    client = sync_client(settings.redis_url, settings.redis_timeout_s)
    heartbeat = Heartbeat(client, keys, worker_id, settings.heartbeat_ttl_s)
    loading = LoadingBeat(heartbeat, settings.heartbeat_interval_s)
    worker: Worker | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if worker is None or worker.stopping.is_set():
            loading.stop()
            heartbeat.remove()
            raise SystemExit(128 + signum)  # still loading, or asked twice: go now
        log.info("signal %s: finishing the job(s) in hand, then exiting", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    heartbeat.update(state="loading")
    loading.start()
    try:
        pipe = load_pipeline(settings, heartbeat)
    except _CONFIG_ERRORS as exc:
        loading.stop()
        heartbeat.remove()
        log.error(config_error_line(settings, exc))
        return CONFIG_ERROR
    worker = build_worker(settings, client, keys, heartbeat, pipe)
    loading.stop()  # from here the worker's Background thread beats
    log.info(
        "worker ready",
        extra={"worker_id": worker_id, "model": pipe.model_name, "device": pipe.device, "dtype": pipe.dtype},
    )
    try:
        worker.run()
    except DeviceFailure as exc:
        log.critical("the device failed (%s): exiting; healthy workers reclaim the jobs in hand", exc)
        return EXIT_DEVICE_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
