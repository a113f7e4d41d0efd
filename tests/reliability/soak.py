"""Soak: mixed load on a real deployment for a set time; reports memory drift (not in CI).

    python tests/reliability/soak.py --duration 300 [--workers 2] [--clients 4] [--out FILE]

Starts an embedded redis-server, `bark-worker` processes on the tiny random checkpoint (or
--model), and the API as its own process (`python -m app.launch.serve` with BARK_REDIS_URL), all on
loopback. Clients then mix every kind of request (whole files, streams, websockets, the
OpenAI route, voice listing, metrics scrapes, 10% abandoned streams, invalid bodies) until the
time is up. Every few seconds it samples the RSS of the API, of each worker and of Redis, and
Redis' INFO memory. The report compares the first sample after warm-up with the last, and
fits a slope (MB per minute) through all samples after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from app.launch.embedded_redis import EmbeddedRedis  # noqa: E402

TEXT = "The soak test keeps talking. It says the same few things again and again, for a while."


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 60 * sum((t - mx) * (v - my) for t, v in points) / var if var else 0.0


class Load:
    def __init__(self, url: str, ws_url: str, seed: int) -> None:
        self.url, self.ws_url = url, ws_url
        self.rng = random.Random(seed)
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []

    async def one(self, http: httpx.AsyncClient) -> None:
        kind = self.rng.choices(
            ["wav", "mp3", "stream", "ws", "openai", "abandon", "read", "invalid"],
            weights=[30, 10, 20, 15, 10, 5, 5, 5],
        )[0]
        seed = self.rng.randrange(2**31)
        started = time.monotonic()
        try:
            status = await getattr(self, f"_{kind}")(http, seed)
        except (httpx.HTTPError, OSError, asyncio.TimeoutError) as exc:
            status = f"client error {exc.__class__.__name__}"
        self.statuses[f"{kind} {status}"] += 1
        if status == 200:
            self.latencies.append(time.monotonic() - started)

    async def _wav(self, http: httpx.AsyncClient, seed: int) -> int:
        return (await http.post("/synthesize", json={"text": TEXT, "seed": seed})).status_code

    async def _mp3(self, http: httpx.AsyncClient, seed: int) -> int:
        body = {"text": TEXT, "seed": seed, "format": "mp3"}
        return (await http.post("/synthesize", json=body)).status_code

    async def _stream(self, http: httpx.AsyncClient, seed: int) -> int:
        body = {"text": TEXT, "seed": seed, "stream": True}
        async with http.stream("POST", "/synthesize", json=body) as r:
            await r.aread()
            return r.status_code

    async def _abandon(self, http: httpx.AsyncClient, seed: int) -> str:
        """What the server answered before the client walked away (its status, and whether
        audio had come), not a status of our own making."""
        body = {"text": TEXT + " " + TEXT, "seed": seed, "stream": True, "format": "pcm"}
        audio = False
        async with http.stream("POST", "/synthesize", json=body) as r:
            async for piece in r.aiter_raw():
                audio = bool(piece)
                break  # first audio in: walk away
        return f"{r.status_code} left after first audio" if audio else f"{r.status_code} no audio"

    async def _ws(self, http: httpx.AsyncClient, seed: int) -> int:
        async with connect(f"{self.ws_url}/ws/synthesize") as ws:
            await ws.send(json.dumps({"text": TEXT, "seed": seed}))
            while True:
                message = await asyncio.wait_for(ws.recv(), 120)
                if isinstance(message, str) and json.loads(message)["type"] in ("done", "error"):
                    return 200 if json.loads(message)["type"] == "done" else 500

    async def _openai(self, http: httpx.AsyncClient, seed: int) -> int:
        body = {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "wav"}
        return (await http.post("/v1/audio/speech", json=body)).status_code

    async def _read(self, http: httpx.AsyncClient, seed: int) -> int:
        await http.get("/metrics")
        return (await http.get("/voices")).status_code

    async def _invalid(self, http: httpx.AsyncClient, seed: int) -> int:
        return (await http.post("/synthesize", json={"text": "", "surprise": 1})).status_code

    async def run(self, clients: int, until: float, max_requests: int) -> None:
        sent = 0

        async def client() -> None:
            nonlocal sent
            async with httpx.AsyncClient(base_url=self.url, timeout=120) as http:
                while time.monotonic() < until and sent < max_requests:
                    sent += 1
                    await self.one(http)

        await asyncio.gather(*(client() for _ in range(clients)))


def sample(procs: dict[str, int], client: redis.Redis, t0: float) -> dict[str, Any]:
    info: Any = client.info("memory")
    return {
        "t": round(time.monotonic() - t0, 1),
        "rss_mb": {name: round(rss_mb(pid), 1) for name, pid in procs.items()},
        "redis_used_memory_mb": round(info["used_memory"] / 2**20, 2),
        "redis_keys": client.dbsize(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=300, help="seconds of load")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=100_000, help="bound on requests")
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--model", help="checkpoint dir (default: a fresh tiny random one)")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bark-soak-"))
    model = args.model
    if model is None:
        from bark_core.maker import make_checkpoint

        model = str(make_checkpoint(scratch / "tiny", size="tiny", seed=0))
    server = EmbeddedRedis(scratch / "redis")
    url = server.start()
    port = 18000 + random.randrange(1000)
    env = {
        **os.environ,
        "BARK_REDIS_URL": url,
        "BARK_MODEL": model,
        "BARK_TORCH_THREADS": "1",
        "BARK_MAX_DURATION_S": "0.25",
        "BARK_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
        "BARK_PORT": str(port),
        "BARK_JOB_TTL_S": "30",
    }
    logs = open(scratch / "processes.log", "wb")  # noqa: SIM115
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "app.worker.main"],
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        for _ in range(args.workers)
    ]
    api = subprocess.Popen(
        [sys.executable, "-m", "app.launch.serve"], env=env, stdout=logs, stderr=subprocess.STDOUT, cwd=REPO
    )
    base = f"http://127.0.0.1:{port}"
    procs = {"api": api.pid, "redis": server.proc.pid if server.proc else 0}
    procs.update({f"worker{i}": w.pid for i, w in enumerate(workers)})
    client = redis.Redis.from_url(url)
    samples: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit(f"not ready; see {scratch / 'processes.log'}")
        load = Load(base, f"ws://127.0.0.1:{port}", seed=1)
        t0 = time.monotonic()
        until = t0 + args.duration

        async def drive() -> None:
            async def sampler() -> None:
                while time.monotonic() < until:
                    samples.append(sample(procs, client, t0))
                    await asyncio.sleep(args.sample_every)

            await asyncio.gather(load.run(args.clients, until, args.max_requests), sampler())

        asyncio.run(drive())
        time.sleep(2)
        samples.append(sample(procs, client, t0))  # after the load: what stayed
    finally:
        for proc in [api, *workers]:
            proc.terminate()
        for proc in [api, *workers]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()

    report = summarize(samples, load, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


def summarize(samples: list[dict[str, Any]], load: Load, args: argparse.Namespace) -> dict[str, Any]:
    warmup = max(30.0, 0.1 * args.duration)  # caches, allocator pools and lazy imports fill first
    steady = [s for s in samples if s["t"] >= warmup] or samples[-2:]
    first, last = steady[0], steady[-1]
    drift = {
        name: {
            "after_warmup_mb": first["rss_mb"][name],
            "end_mb": last["rss_mb"][name],
            "drift_mb": round(last["rss_mb"][name] - first["rss_mb"][name], 1),
            "slope_mb_per_min": round(slope_per_min([(s["t"], s["rss_mb"][name]) for s in steady]), 3),
        }
        for name in first["rss_mb"]
    }
    latencies = sorted(load.latencies)
    return {
        "duration_s": args.duration,
        "workers": args.workers,
        "clients": args.clients,
        "warmup_s": warmup,
        "samples": len(samples),
        "requests": sum(load.statuses.values()),
        "outcomes": dict(sorted(load.statuses.items())),
        "p50_ok_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
        "p99_ok_s": round(latencies[int(len(latencies) * 0.99)], 3) if latencies else None,
        "rss": drift,
        "redis_used_memory_mb": {
            "after_warmup": first["redis_used_memory_mb"],
            "end": last["redis_used_memory_mb"],
            "growth": round(last["redis_used_memory_mb"] - first["redis_used_memory_mb"], 2),
        },
        "redis_keys": {"after_warmup": first["redis_keys"], "end": last["redis_keys"]},
    }


if __name__ == "__main__":
    sys.exit(main())
