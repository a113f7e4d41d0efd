"""Time to the first byte of every response format, streamed and whole, through a real bark-serve.

One request at a time (greedy, a three-chunk text, each chunk capped at --seconds of audio):
for each format, `stream: true` against the same request as a whole file. Streaming sends the
first chunk's encoded bytes as soon as it is decoded; the whole file waits for the last chunk.
The first byte counted is the first audio byte (past the 44-byte header for wav).

    .venv/bin/python -m benchmarks.stream_formats_bench --size tiny --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from benchmarks.common import checkpoint, machine, table, write_json
from benchmarks.service_bench import _free_port, start_server, wait_ready

FORMATS = ("wav", "pcm", "mp3", "opus", "aac", "flac", "ogg")
TEXT = " ".join(
    f"This is sentence number {i}, which is long enough to fill a chunk of text by itself." for i in range(6)
)  # three text chunks


async def first_byte(client, base: str, fmt: str, stream: bool, seconds: float) -> tuple[float, float]:
    body = {"text": TEXT, "seed": 1, "format": fmt, "stream": stream, "max_duration_s": seconds}
    body |= {"text_temp": 0.0, "waveform_temp": 0.0, "fine_temp": 0.0, "min_eos_p": None}
    skip = 44 if fmt == "wav" else 0
    t0 = time.perf_counter()
    first, received = None, 0
    async with client.stream("POST", f"{base}/synthesize", json=body) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for part in resp.aiter_bytes():
            received += len(part)
            if first is None and received > skip:
                first = time.perf_counter() - t0
    return first or float("nan"), time.perf_counter() - t0


async def run(args: argparse.Namespace) -> dict:
    import httpx

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args.batch, args.device, args.dtype, args.threads, args.workers = 1, None, None, args.threads, 1
    proc = start_server(args, args.checkpoint or str(checkpoint(args.size)), port, Path(args.server_log))
    rows = []
    try:
        await wait_ready(base, proc)
        async with httpx.AsyncClient(timeout=600) as client:
            await first_byte(client, base, "wav", True, args.seconds)  # warm-up
            for fmt in FORMATS:
                row: dict = {"format": fmt}
                for stream in (True, False):
                    runs = [
                        await first_byte(client, base, fmt, stream, args.seconds) for _ in range(args.repeat)
                    ]
                    tag = "stream" if stream else "whole"
                    row[f"{tag}_ttfb_s"] = statistics.median(r[0] for r in runs)
                    row[f"{tag}_total_s"] = statistics.median(r[1] for r in runs)
                print(row, flush=True)
                rows.append(row)
    finally:
        proc.terminate()
        proc.wait(60)
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.stream_formats_bench")
    ap.add_argument("--size", default="tiny", choices=["tiny", "small"])
    ap.add_argument("--checkpoint")
    ap.add_argument("--seconds", type=float, default=1.0, help="audio per text chunk")
    ap.add_argument("--repeat", type=int, default=3, help="requests per cell; the median is kept")
    ap.add_argument("--threads", type=int, default=2, help="BARK_TORCH_THREADS of the worker")
    ap.add_argument("--server-log", default="/tmp/bark-serve-stream-bench.log")
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    columns = [
        ("format", "format"),
        ("stream_ttfb_s", "streamed: first byte (s)"),
        ("whole_ttfb_s", "whole file: first byte (s)"),
        ("stream_total_s", "streamed: last byte (s)"),
    ]
    print(table(result["rows"], columns))
    write_json("stream_formats", {"machine": machine(), "args": vars(args), **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
