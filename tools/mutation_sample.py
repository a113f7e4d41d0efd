"""A seeded random sample of the mutants not judged yet, for a `mutmut run` that cannot judge
them all in the time it has (stages.py's ~800 mutants each run ~80 tests, ~100 s for a
survivor on 2 cores). A uniform sample gives a kill rate for the whole file, where a run cut
short by its time bound covers only the functions that come first.

    cd artifacts/mutate && mutmut run $(python -m tools.mutation_sample 'bark_core.stages*' 300)
"""

from __future__ import annotations

import argparse
import random
from fnmatch import fnmatch

from tools.mutation_summary import statuses


def sample(names: dict[str, str], pattern: str, n: int, seed: int) -> list[str]:
    pending = sorted(n for n, status in names.items() if fnmatch(n, pattern) and status == "not checked")
    return sorted(random.Random(seed).sample(pending, min(n, len(pending))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pattern", help="mutant names, a glob (e.g. 'bark_core.stages*')")
    ap.add_argument("n", type=int, help="how many to draw")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(" ".join(sample(statuses(), args.pattern, args.n, args.seed)))


if __name__ == "__main__":
    main()
