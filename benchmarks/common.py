"""Shared pieces of the benchmarks: the cached checkpoints, machine facts, floors, tables.

Nothing here is timed itself; it only measures the machine (bandwidth, FLOP/s) and formats.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

from bark_core.maker import MAKER_VERSION

CACHE = Path(os.environ.get("BARK_BENCH_CACHE", Path.home() / ".cache" / "bark-serve"))
RESULTS = Path(__file__).resolve().parent / "results"


def checkpoint(size: str) -> Path:
    """The random-weight checkpoint of `size`, made once and kept under CACHE/bench-<size>."""
    from bark_core.maker import MARKER_FILE, make_checkpoint

    path = CACHE / f"bench-{size}-v{MAKER_VERSION}"
    if not (path / MARKER_FILE).exists():
        print(f"making the {size} random checkpoint in {path} (once)", flush=True)
        make_checkpoint(path, size=size, seed=0)  # type: ignore[arg-type]
    return path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine() -> dict:
    import torch

    flags = cpu_flags()
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(
    fn: Callable[[], object],
    repeat: int = 5,
    sync: Callable[[], None] | None = None,
    inner: int = 1,
) -> float:
    """Smallest per-call wall time over `repeat` timings of `inner` back-to-back calls, after
    one untimed warm-up. On a GPU, `sync` ends each timing and `inner` > 1 keeps a short kernel
    from being measured as the cost of one synchronization."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        if sync:
            sync()
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        if sync:
            sync()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def cuda_sync(device: str) -> Callable[[], None] | None:
    """torch.cuda.synchronize where `device` is a GPU (kernels run asynchronously), else None."""
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else None


def reset_gpu_peak(device: str) -> None:
    """Start a fresh peak: what a timed run allocates, not the warm-up or the load before it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def gpu_memory(device: str) -> dict[str, float]:
    """Peak allocated (tensors) and reserved (the caching allocator's segments: what the card
    really gives this process) memory since the last reset, in MiB; empty off the GPU."""
    import torch

    if not device.startswith("cuda"):
        return {}
    return {
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20,
        "peak_gpu_reserved_mib": torch.cuda.max_memory_reserved() / 2**20,
    }


def measure_machine(device: str = "cpu") -> dict:
    """Memory bandwidth (decode-shaped GEMV and a streaming sum) and GEMM FLOP/s per dtype."""
    import torch
    import torch.nn.functional as F

    sync = cuda_sync(device)
    # a 1024x768x3072 fp16 GEMM takes ~10 us on an H100, a synchronize about as long
    inner = 50 if sync else 1
    out: dict[str, float] = {}
    with torch.inference_mode():
        # 96 MiB of fp32 weights, one activation row: how a decode step reads its weights
        w = torch.randn(32768, 768, device=device)
        x = torch.randn(1, 768, device=device)
        t = best_of(lambda: F.linear(x, w), sync=sync, inner=inner)
        out["gemv_fp32_GBps"] = w.numel() * 4 / t / 1e9
        big = torch.randn(64 * 1024 * 1024, device=device)  # 256 MiB
        t = best_of(big.sum, sync=sync, inner=inner)
        out["stream_read_GBps"] = big.numel() * 4 / t / 1e9
        del big
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
        if device.startswith("cuda"):
            dtypes["fp16"] = torch.float16
        for name, dt in dtypes.items():
            a = torch.randn(1024, 768, device=device, dtype=dt)
            b = torch.randn(3072, 768, device=device, dtype=dt)
            t = best_of(lambda a=a, b=b: F.linear(a, b), repeat=3, sync=sync, inner=inner)
            out[f"gemm_{name}_GFLOPs"] = 2 * 1024 * 768 * 3072 / t / 1e9
        if not device.startswith("cuda"):
            from bark_core.modules import quantize_int8

            lin = quantize_int8(torch.nn.Sequential(torch.nn.Linear(768, 3072, bias=False)))
            a = torch.randn(1024, 768)
            t = best_of(lambda: lin(a), repeat=3)
            out["gemm_int8_GFLOPs"] = 2 * 1024 * 768 * 3072 / t / 1e9
    out["bandwidth_GBps"] = max(out["gemv_fp32_GBps"], out["stream_read_GBps"])
    if sync:  # the parent keeps running while each mode's child uses the card: give it back
        torch.cuda.empty_cache()
    return out


def write_json(name: str, payload: dict, path: Path | None = None) -> Path:
    """To `path`, else benchmarks/results/<name>-<stamp>.json (git-ignored: results are not
    committed; benchmarks/README.md keeps the tables and the commands)."""
    if path is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = RESULTS / f"{name}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A Markdown table: columns are (key, header); floats get 3 significant figures."""

    def cell(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])
