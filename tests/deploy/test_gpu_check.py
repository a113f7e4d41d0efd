"""`make gpu-check` on a machine without a GPU, and the parts of it that hold it to its budget.

The GPU steps themselves cannot run here (no GPU in CI); what can fail here is what a
first-time user meets on the wrong machine (one clear line, a non-zero exit, no hang) and
the step runner that keeps the whole check inside its 8 minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import gpu_check

from .deploy_support import REPO, tool

NO_GPU_TIMEOUT_S = 60  # importing torch on a loaded two-core machine; a hang fails here


def test_without_a_gpu_it_says_so_in_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    # CUDA_VISIBLE_DEVICES="" hides any GPU, so this holds on a GPU host too
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "results"
    t = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=NO_GPU_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == gpu_check.NO_GPU_EXIT != 0, result
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA GPU: "), lines
    assert "nothing was run" in lines[0]
    assert not out.exists(), "no results without a GPU"
    assert time.monotonic() - t < NO_GPU_TIMEOUT_S


def test_make_gpu_check_runs_the_script() -> None:
    dry = subprocess.run(
        [tool("make"), "-n", "gpu-check"], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert dry.returncode == 0, dry.stderr
    assert "-m benchmarks.gpu_check" in dry.stdout


def test_a_step_past_its_limit_is_killed_with_what_it_started(tmp_path: Path) -> None:
    # the step starts a grandchild (as the service step starts bark-serve): both must go
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(120)"
    )
    step = gpu_check.Step("sleeper", [sys.executable, "-c", script], limit_s=600)
    t = time.monotonic()
    result = gpu_check.run_step(step, limit_s=3, log=tmp_path / "sleeper.log")
    assert time.monotonic() - t < 30
    assert result.rc is None and not result.ok
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild), "the step's own child outlived the time limit"


def test_steps_share_one_budget(tmp_path: Path) -> None:
    quick = [sys.executable, "-c", "import time; time.sleep(2)"]
    steps = [gpu_check.Step(f"s{i}", quick, limit_s=100) for i in range(4)]
    t = time.monotonic()
    results = gpu_check.run_all(steps, tmp_path, budget_s=9)
    assert time.monotonic() - t < 20
    assert [r.ok for r in results][:2] == [True, True]
    assert results[-1].rc is None and "budget" in results[-1].tail  # nothing left for it
    assert gpu_check.BUDGET_S <= 8 * 60


def test_the_plan_is_the_issues_checks() -> None:
    plan = gpu_check.plan(Path("/tmp/x"))
    steps = {s.name: " ".join(s.argv) for s in plan}
    assert gpu_check.CUDA_TESTS in steps["cuda-tests"] and (REPO / gpu_check.CUDA_TESTS).is_file()
    modes = steps["pipeline"].split("--modes ")[1].split()[0].split(",")
    assert {"ref-fp16", "core-fp16", "core-fp16-eager", "ref-fp16-offload", "core-fp16-offload"} <= set(modes)
    assert "--device cuda" in steps["pipeline"] and "--device cuda" in steps["service"]
    assert "--levels 1,16" in steps["service"]
    assert sum(s.limit_s for s in plan) <= gpu_check.BUDGET_S


def test_the_table_names_the_card_and_both_offload_peaks() -> None:
    card = {"name": "NVIDIA H200", "capability": "sm90", "memory_gib": 140.0, "driver": "580.95.05"}
    modes = [
        {"mode": "core-fp16", "total_s": 3.0, "peak_gpu_mib": 1900.0, "peak_gpu_reserved_mib": 2100.0},
        {"mode": "core-fp16-offload", "total_s": 4.0, "peak_gpu_mib": 700.0, "peak_gpu_reserved_mib": 800.0},
    ]
    report = {
        "card": {**card, "torch": "2.13.0+cu130", "cuda": "13.0", "cudnn": 92000},
        "started": "now",
        "total_s": 300.0,
        "budget_s": 480,
        "steps": [{"name": "pipeline", "rc": 0, "seconds": 200.0, "limit_s": 210.0}],
        "pipeline": {"modes": modes, "errors": {"ref-fp16-offload": "ImportError: accelerate"}},
        "service": None,
    }
    text = gpu_check.render(report)
    assert text.startswith("# gpu-check on NVIDIA H200")
    assert "| core-fp16-offload | 4 | - | - | - | - | - | - | 700 | 800 | - | - |" in text
    assert "ref-fp16-offload failed: `ImportError: accelerate`" in text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child of a dead parent may linger as a zombie until init reaps it
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"
