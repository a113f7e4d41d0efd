"""Retries: the seed of each attempt at a chunk, and which attempt to keep.

`attempt_seed(seed, chunk_index, 0)` depends on (seed, chunk_index) only: it is the seed of
chunk k's generator whether checks are on or off, so a request that needs no retry gives the
same audio either way. Attempt a > 0 gets a seed of its own from (seed, chunk_index, a), so a
request with a fixed seed retries the same way, and sends the same audio, run after run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .checks import CheckResult

SEED_BITS = 63  # fits torch.Generator.manual_seed, a signed 64-bit int and JSON


def attempt_seed(seed: int, chunk_index: int, attempt: int) -> int:
    """A seed in [0, 2**63) for attempt `attempt` (0 = the first) at chunk `chunk_index` of a
    request seeded `seed` (any int). BLAKE2b of the three: stable across processes and
    Python versions (unlike `hash`), and independent streams for neighbouring chunks."""
    if chunk_index < 0 or attempt < 0:
        raise ValueError("chunk_index and attempt must be >= 0")
    key = f"{seed}:{chunk_index}" if attempt == 0 else f"{seed}:{chunk_index}:{attempt}"
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"bark-serve").digest()
    return int.from_bytes(digest, "little") >> (64 - SEED_BITS)


def passed(results: Sequence[CheckResult]) -> bool:
    return all(r.passed for r in results)


@dataclass(frozen=True, order=True)
class AttemptScore:
    """Lower is better: fewer failed checks first, then less severity (how far past their
    thresholds the failures went, summed)."""

    failed: int
    severity: float


def score(results: Sequence[CheckResult]) -> AttemptScore:
    return AttemptScore(sum(not r.passed for r in results), round(sum(r.severity for r in results), 6))


def best_attempt(attempts: Sequence[Sequence[CheckResult]]) -> int:
    """The index (into `attempts`) of the attempt to send: the best score, the earliest among
    equals, so the choice is deterministic. Pass only attempts that reached audio (an attempt
    stopped after its semantic checks has nothing to send): their results hold the same
    kinds of check, so their scores compare like with like."""
    if not attempts:
        raise ValueError("no attempts to choose from")
    return min(range(len(attempts)), key=lambda i: (score(attempts[i]), i))
