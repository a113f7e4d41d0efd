"""Service benchmark: concurrent requests through the HTTP API of a real `bark-serve`.

It starts `bark-serve --workers N --model DIR` (embedded Redis, local workers) on a free
loopback port, waits for /readyz, then for each concurrency level sends that many streamed
POST /synthesize requests at once (greedy, a fixed audio length each) and measures:
throughput (audio seconds per wall second), time to the first audio byte (past the WAV
header) and latency, p50/p95. With --overhead it also measures the API's own cost per request
over the websocket: end-to-end time minus the worker's generation time from the `done` event
(rtf x duration), one request at a time.

    .venv/bin/python -m benchmarks.service_bench --size tiny --overhead
    .venv/bin/python -m benchmarks.service_bench --size small --levels 1,8 --seconds 0.5
    .venv/bin/python -m benchmarks.service_bench --size small --levels 1,16 --device cuda --dtype float16

Only loopback traffic; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import checkpoint, machine, table, write_json

TEXT = "Hello there, my dog is cute."
WAV_HEADER = 44


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def start_server(args: argparse.Namespace, ckpt: str, port: int, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("bark-serve")
    env = {**os.environ, "BARK_BATCH_SIZE": str(args.batch), "BARK_LOG_LEVEL": "WARNING"}
    for name, value in (("DEVICE", args.device), ("DTYPE", args.dtype), ("TORCH_THREADS", args.threads)):
        if value:
            env[f"BARK_{name}"] = str(value)
    workers = args.workers
    env.pop("BARK_REDIS_URL", None)
    cmd = [str(exe), "--workers", str(workers), "--model", ckpt, "--port", str(port), "--host", "127.0.0.1"]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


async def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"bark-serve exited with {proc.returncode}")
            try:
                if (await client.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError("bark-serve not ready in time")


def _body(seed: int, seconds: float, voice: str | None) -> dict:
    return {
        "text": TEXT,
        "voice": voice,
        "seed": seed,
        "stream": True,
        "format": "wav",
        "text_temp": 0.0,
        "waveform_temp": 0.0,
        "fine_temp": 0.0,
        "min_eos_p": None,
        "max_duration_s": seconds,
    }


async def one_request(client, base: str, body: dict, delay_s: float = 0.0) -> dict:  # type: ignore[no-untyped-def]
    await asyncio.sleep(delay_s)
    t0 = time.perf_counter()
    first = None
    received = 0
    async with client.stream("POST", f"{base}/synthesize", json=body) as resp:
        status = resp.status_code
        async for part in resp.aiter_bytes():
            received += len(part)
            if first is None and received > WAV_HEADER:
                first = time.perf_counter() - t0
    latency = time.perf_counter() - t0
    audio_s = max(0, received - WAV_HEADER) / 2 / 24_000
    return {"status": status, "ttfa_s": first, "latency_s": latency, "audio_s": audio_s}


async def stage_batch_totals(base: str) -> dict[str, tuple[float, float]]:
    """Per stage: (sum, count) of bark_stage_batch_rows from the API's /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{base}/metrics")).text
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "bark_stage_batch_rows":
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", "")
            if sample.name.endswith("_sum"):
                totals.setdefault(stage, [0.0, 0.0])[0] = sample.value
            elif sample.name.endswith("_count"):
                totals.setdefault(stage, [0.0, 0.0])[1] = sample.value
    return {stage: (v[0], v[1]) for stage, v in totals.items()}


async def level(
    base: str, concurrency: int, seconds: float, voice: str | None, seed0: int, stagger_s: float = 0.0
) -> dict:
    """`concurrency` requests, request i sent `i * stagger_s` after the first (0: all at once)."""
    import httpx

    before = await stage_batch_totals(base)

    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(timeout=httpx.Timeout(900.0), limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(
                one_request(client, base, _body(seed0 + i, seconds, voice), i * stagger_s)
                for i in range(concurrency)
            )
        )
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["status"] == 200]
    audio = sum(r["audio_s"] for r in ok)
    after = await stage_batch_totals(base)
    # mean rows per batched stage run, as each request's chunks saw it
    rows = {}
    for stage, (total, count) in after.items():
        t0, c0 = before.get(stage, (0.0, 0.0))
        rows[stage] = (total - t0) / (count - c0) if count > c0 else None
    return {
        "concurrency": concurrency,
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "wall_s": wall,
        "audio_s": audio,
        "throughput_audio_s_per_s": audio / wall,
        "ttfa_p50_s": _pct([r["ttfa_s"] for r in ok if r["ttfa_s"] is not None], 0.5),
        "ttfa_p95_s": _pct([r["ttfa_s"] for r in ok if r["ttfa_s"] is not None], 0.95),
        "latency_p50_s": _pct([r["latency_s"] for r in ok], 0.5),
        "latency_p95_s": _pct([r["latency_s"] for r in ok], 0.95),
        "loadavg": os.getloadavg()[0],
        "mean_stage_batch": rows,
        "coarse_batch": rows.get("coarse"),
    }


async def overhead(port: int, n: int, seconds: float, voice: str | None) -> dict:
    """End-to-end websocket time minus the worker's own generation time, one at a time."""
    import websockets

    samples = []
    for i in range(n):
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/synthesize", max_size=None) as ws:
            t0 = time.perf_counter()
            await ws.send(json.dumps({**_body(1000 + i, seconds, voice), "stream": False}))
            done = None
            while done is None:
                msg = await ws.recv()
                if isinstance(msg, str):
                    event = json.loads(msg)
                    if event["type"] == "done":
                        done = event
                    elif event["type"] == "error":
                        raise RuntimeError(event)
            e2e = time.perf_counter() - t0
        gen = float(done["rtf"]) * float(done["duration_s"])
        samples.append({"e2e_s": e2e, "gen_s": gen, "overhead_ms": (e2e - gen) * 1e3})
    over = [s["overhead_ms"] for s in samples]
    return {
        "requests": n,
        "overhead_p50_ms": statistics.median(over),
        "overhead_p95_ms": _pct(over, 0.95),
        "e2e_p50_s": statistics.median(s["e2e_s"] for s in samples),
        "gen_p50_s": statistics.median(s["gen_s"] for s in samples),
    }


async def run(args: argparse.Namespace) -> dict:
    ckpt = args.checkpoint or str(checkpoint(args.size))
    voice = None if args.voice.lower() == "none" else args.voice
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(args.server_log)
    proc = start_server(args, ckpt, port, log)
    try:
        t = time.perf_counter()
        await wait_ready(base, proc)
        ready_s = time.perf_counter() - t
        print(
            f"bark-serve ready in {ready_s:.1f} s (workers {args.workers}, batch {args.batch}, "
            f"threads {args.threads or 'default'})",
            flush=True,
        )
        # one warm-up request: first-call costs are not part of any level
        await level(base, 1, min(args.seconds, 0.5), voice, 999)
        levels = []
        for c in [int(x) for x in args.levels.split(",")]:
            print(f"concurrency {c} (load {os.getloadavg()[0]:.2f}) ...", flush=True)
            row = await level(base, c, args.seconds, voice, 100 * c, args.stagger)
            print(
                f"    {row['wall_s']:.1f} s, {row['throughput_audio_s_per_s']:.3f} audio s/s, "
                f"ttfa p50 {row['ttfa_p50_s']}, errors {row['errors']}",
                flush=True,
            )
            levels.append(row)
        base1 = levels[0]["throughput_audio_s_per_s"] if levels else None
        for row in levels:
            row["x_throughput_vs_first"] = row["throughput_audio_s_per_s"] / base1 if base1 else None
        over = await overhead(port, args.overhead_requests, args.seconds, voice) if args.overhead else None
        return {"ready_s": ready_s, "levels": levels, "overhead": over}
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tiny", choices=["tiny", "small"])
    ap.add_argument("--checkpoint")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="BARK_BATCH_SIZE of the workers")
    ap.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="seconds between the requests of a level (default 0: all at once)",
    )
    ap.add_argument("--threads", type=int, help="BARK_TORCH_THREADS per worker (default: torch's)")
    ap.add_argument("--device", help="BARK_DEVICE of the workers (default: the setting's, auto)")
    ap.add_argument("--dtype", help="BARK_DTYPE of the workers, e.g. float16 on a GPU")
    ap.add_argument("--json", type=Path, help="write the results here (default: benchmarks/results/)")
    ap.add_argument("--levels", default="1,4,8,16")
    ap.add_argument("--seconds", type=float, default=2.0, help="audio per request")
    ap.add_argument("--voice", default="v2/en_speaker_6")
    ap.add_argument("--overhead", action="store_true", help="also measure the API overhead (websocket)")
    ap.add_argument("--overhead-requests", type=int, default=20)
    ap.add_argument("--server-log", default="/tmp/bark-serve-bench.log")
    args = ap.parse_args(argv)
    info = machine()
    result = asyncio.run(run(args))
    payload = {
        "benchmark": "service",
        "machine": info,
        "loadavg_end": os.getloadavg(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **result,
    }
    print(
        f"\n## Service: {args.size} checkpoint on {info.get('gpu', info['cpu'])} "
        f"({args.device or 'auto'}, {args.dtype or 'default dtype'}), "
        f"{args.workers} worker(s) x {args.threads or 'default'} "
        f"threads, batch {args.batch}, stagger {args.stagger} s, "
        f"{args.seconds} s of audio per request; load at start {info['loadavg_start']}\n"
    )
    print(
        table(
            result["levels"],
            [
                ("concurrency", "concurrent"),
                ("ok", "ok"),
                ("wall_s", "wall s"),
                ("throughput_audio_s_per_s", "audio s / s"),
                ("x_throughput_vs_first", "x level 1"),
                ("ttfa_p50_s", "TTFA p50 s"),
                ("ttfa_p95_s", "TTFA p95 s"),
                ("latency_p50_s", "latency p50 s"),
                ("latency_p95_s", "latency p95 s"),
                ("coarse_batch", "coarse rows/run"),
                ("loadavg", "load"),
            ],
        )
    )
    if result["overhead"]:
        o = result["overhead"]
        print(
            f"\nAPI overhead over {o['requests']} sequential websocket requests: "
            f"p50 {o['overhead_p50_ms']:.1f} ms, p95 {o['overhead_p95_ms']:.1f} ms "
            f"(end-to-end p50 {o['e2e_p50_s']:.3f} s, worker p50 {o['gen_p50_s']:.3f} s)"
        )
    path = write_json(f"service-{args.size}", payload, args.json)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
