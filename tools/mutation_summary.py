"""The kill rate of the last `mutmut run` (make mutate), per mutated file and in all.

Run in the directory mutmut ran in. `mutmut results --all true` lists every mutant as
`module.function__mutmut_N: status`; this counts them. Killed and timed-out mutants were
caught; survivors and mutants no fast test reaches ("no tests") were not; "not checked" ones
were not reached before the run's time limit and are left out of the rate.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

CAUGHT = ("killed", "timeout")
MISSED = ("survived", "no tests", "suspicious", "segfault")


def _mutmut() -> str:
    return shutil.which("mutmut") or str(Path(sys.executable).parent / "mutmut")


def statuses() -> dict[str, str]:
    """Every mutant's status, by name (`module.x_function__mutmut_N`)."""
    out = subprocess.run([_mutmut(), "results", "--all", "true"], capture_output=True, text=True, check=True)
    found = {}
    for line in out.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            found[name] = status
    return found


def count() -> dict[str, Counter[str]]:
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in statuses().items():
        by_module[name.split(".x", 1)[0]][status] += 1
    return by_module


def rate(counts: Counter[str]) -> str:
    """Killed over judged; timeouts are judged too, and shown counted both ways (on a loaded
    machine a slow test can time out without the mutant looping)."""
    judged = sum(counts[s] for s in CAUGHT + MISSED)
    if not judged:
        return "n/a"
    killed, caught = counts["killed"], sum(counts[s] for s in CAUGHT)
    with_timeouts = f"{100 * caught / judged:.1f}% with timeouts"
    return f"{100 * killed / judged:.1f}% killed ({killed}/{judged}), {with_timeouts}"


def main() -> None:
    by_module = count()
    total: Counter[str] = Counter()
    for module, counts in sorted(by_module.items()):
        total += counts
        print(f"{module}: kill rate {rate(counts)}; {dict(counts)}")
    print(f"ALL: kill rate {rate(total)}; {dict(total)}")


if __name__ == "__main__":
    main()
