"""`make gpu-check`: what a GPU host should run first, in one command, in at most 8 minutes.

    .venv/bin/python -m benchmarks.gpu_check                 # on a CUDA host
    .venv/bin/python -m benchmarks.gpu_check --out-dir /tmp/gpu-check

Steps, each a subprocess with its own time limit (never past the whole budget):
  checkpoint  the bark-small-shaped random checkpoint, made once (benchmarks/common.py)
  cuda-tests  pytest tests/bark_core/test_cuda.py
  pipeline    transformers fp16 against bark_core fp16, each with and without CPU offload
              (peak GPU memory allocated and reserved, both ways), bark_core fp16 with its
              CUDA graphs off (`-eager`, against on), bark_core fp32 for the
              fp16/bf16 agreement measured on the GPU, and the batched decode step
  service     a real bark-serve on the GPU (fp16, batch 16) at 1 and 16 concurrent streams

It writes one JSON and one Markdown table, named after the card (torch.cuda.get_device_name),
under benchmarks/results/ (git-ignored). A failed or timed-out step is reported and the next
one still runs; the exit status is non-zero if any step failed. Without a CUDA GPU it says so
in one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import RESULTS, table

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 480  # the whole check, issue 13's "at most 8 minutes"
NO_GPU_EXIT = 2
PIPELINE_MODES = "ref-fp16,core-fp16,core-fp16-eager,ref-fp16-offload,core-fp16-offload,core-fp32"
AGREEMENT_MODES = "core-fp16,core-bf16"
SERVICE_LEVELS = "1,16"
CUDA_TESTS = "tests/bark_core/test_cuda.py"


@dataclass
class Step:
    name: str
    argv: list[str]
    limit_s: float  # its own cap; the budget left may cut it shorter


@dataclass
class StepResult:
    name: str
    command: str
    rc: int | None  # None: killed at its time limit
    seconds: float
    limit_s: float
    log: str
    tail: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def no_gpu_reason() -> str | None:
    """Why this process sees no CUDA GPU, in one line; None when it sees one."""
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return (
            f"torch {torch.__version__} is a CPU build; install the CUDA one "
            "(make install TORCH_INDEX=https://download.pytorch.org/whl/cu130, driver >= 580)"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable device{where}"


def card() -> dict:
    import torch

    props = torch.cuda.get_device_properties(0)
    info = {
        "name": torch.cuda.get_device_name(0),
        "capability": f"sm{props.major}{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    try:  # the driver version is nvidia-smi's to tell, not torch's
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        info["driver"] = smi.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        info["driver"] = None
    return info


def card_from_child() -> dict:
    """card() in a short-lived process: querying the device creates a CUDA context (hundreds of
    MiB), which this parent would otherwise hold on the card through every step."""
    code = "import json; from benchmarks.gpu_check import card; print(json.dumps(card()))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def plan(out: Path) -> list[Step]:
    py = sys.executable
    log = out / "service-server.log"
    pipeline = (
        f"benchmarks.pipeline_bench --device cuda --modes {PIPELINE_MODES} "
        f"--agreement {AGREEMENT_MODES} --contexts 300 --batches 1,8"
    )
    service = (
        "benchmarks.service_bench --size small --device cuda --dtype float16 --batch 16 "
        f"--levels {SERVICE_LEVELS} --seconds 2"
    )
    return [
        Step("checkpoint", [py, "-c", "from benchmarks.common import checkpoint; checkpoint('small')"], 60),
        Step("cuda-tests", [py, "-m", "pytest", CUDA_TESTS, "-q", "-p", "no:cacheprovider"], 100),
        Step("pipeline", [py, "-m", *pipeline.split(), "--json", str(out / "pipeline.json")], 210),
        Step(
            "service",
            [py, "-m", *service.split(), "--json", str(out / "service.json"), "--server-log", str(log)],
            100,
        ),
    ]


def run_step(step: Step, limit_s: float, log: Path) -> StepResult:
    """Run one step, its output to `log`; at `limit_s` its whole process group is killed."""
    t = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            step.argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc: int | None = proc.wait(timeout=max(1.0, limit_s))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the step and what it started (bark-serve)
            proc.wait(timeout=30)
            rc = None
    tail = log.read_text(errors="replace")[-2000:]
    return StepResult(step.name, " ".join(step.argv), rc, time.monotonic() - t, limit_s, str(log), tail)


def run_all(steps: list[Step], out: Path, budget_s: float) -> list[StepResult]:
    deadline = time.monotonic() + budget_s
    results = []
    for step in steps:
        left = deadline - time.monotonic()
        if left < 5:
            results.append(
                StepResult(step.name, " ".join(step.argv), None, 0.0, 0.0, "", "not run: budget spent")
            )
            continue
        print(f"gpu-check: {step.name} (at most {min(step.limit_s, left):.0f} s) ...", flush=True)
        result = run_step(step, min(step.limit_s, left), out / f"{step.name}.log")
        status = "ok" if result.ok else ("TIMED OUT" if result.rc is None else f"FAILED rc={result.rc}")
        print(f"gpu-check: {step.name} {status} in {result.seconds:.0f} s", flush=True)
        results.append(result)
    return results


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def render(report: dict) -> str:
    """The Markdown summary: the card, every step, the pipeline, agreement and service tables."""
    c = report["card"]
    lines = [
        f"# gpu-check on {c['name']}",
        "",
        f"{c['name']} ({c['capability']}, {c['memory_gib']} GiB), driver {c.get('driver') or '?'}, "
        f"torch {c['torch']} (CUDA {c['cuda']}, cuDNN {c['cudnn']}); {report['started']}, "
        f"{report['total_s']:.0f} s of a {report['budget_s']} s budget.",
        "",
        table(
            [{**s, "status": _status(s)} for s in report["steps"]],
            [("name", "step"), ("status", "status"), ("seconds", "s"), ("limit_s", "limit s")],
        ),
    ]
    pipeline = report.get("pipeline") or {}
    if pipeline.get("modes"):
        lines += ["", "## Pipeline (greedy, 2 s of audio, one warm-up run per mode)", ""]
        lines.append(table(pipeline["modes"], PIPELINE_COLUMNS))
    for mode, error in (pipeline.get("errors") or {}).items():
        lines += ["", f"{mode} failed: `{error}`"]
    agreement = {k: v for k, v in (pipeline.get("agreement") or {}).items() if k.startswith("core-")}
    if agreement:
        lines += ["", "## Teacher-forced top-1 agreement with fp32 on the GPU", ""]
        rows = [{"mode": k, **v} for k, v in agreement.items()]
        lines.append(
            table(rows, [("mode", "mode"), ("semantic", "semantic"), ("coarse", "coarse"), ("fine", "fine")])
        )
    service = report.get("service") or {}
    if service.get("levels"):
        lines += ["", "## Service (fp16, one worker, batch 16, 2 s of audio per request)", ""]
        lines.append(table(service["levels"], SERVICE_COLUMNS))
    return "\n".join(lines) + "\n"


def _status(step: dict) -> str:
    if step["rc"] == 0:
        return "ok"
    return "timed out / not run" if step["rc"] is None else f"failed (rc {step['rc']})"


PIPELINE_COLUMNS = [
    ("mode", "mode"),
    ("total_s", "total s"),
    ("semantic_s", "semantic s"),
    ("coarse_s", "coarse s"),
    ("fine_s", "fine s"),
    ("codec_s", "codec s"),
    ("semantic_ms_per_tok", "sem ms/tok"),
    ("coarse_ms_per_tok", "coarse ms/tok"),
    ("peak_gpu_mib", "peak GPU alloc MiB"),
    ("peak_gpu_reserved_mib", "peak GPU reserved MiB"),
    ("cuda_graphs", "graphs captured/replayed"),
    ("speedup_vs_ref_same_dtype", "x transformers (same dtype, offload)"),
]
SERVICE_COLUMNS = [
    ("concurrency", "streams"),
    ("ok", "ok"),
    ("wall_s", "wall s"),
    ("throughput_audio_s_per_s", "audio s / s"),
    ("ttfa_p50_s", "TTFA p50 s"),
    ("latency_p50_s", "latency p50 s"),
    ("latency_p95_s", "latency p95 s"),
    ("coarse_batch", "coarse rows/run"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, help="where the logs and results go (default: a new folder)")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all steps together")
    args = ap.parse_args(argv)
    reason = no_gpu_reason()
    if reason:
        print(f"gpu-check: no CUDA GPU: {reason}; nothing was run", file=sys.stderr)
        return NO_GPU_EXIT
    info = card_from_child()
    slug = re.sub(r"[^a-z0-9]+", "-", info["name"].lower()).strip("-")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out = args.out_dir or RESULTS / f"gpu-check-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"gpu-check on {info['name']} ({info['capability']}, torch {info['torch']}); logs in {out}",
        flush=True,
    )
    t = time.monotonic()
    steps = run_all(plan(out), out, args.budget)
    report = {
        "benchmark": "gpu-check",
        "card": info,
        "started": started,
        "budget_s": args.budget,
        "total_s": time.monotonic() - t,
        "steps": [{**asdict(s), "ok": s.ok} for s in steps],
        "pipeline": _load(out / "pipeline.json"),
        "service": _load(out / "service.json"),
    }
    (out / "gpu-check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "gpu-check.md").write_text(render(report))
    print(render(report))
    print(f"wrote {out / 'gpu-check.json'} and {out / 'gpu-check.md'}")
    return 0 if all(s.ok for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
