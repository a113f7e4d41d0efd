"""Checks on every chunk before it is sent (issue 16): run-on, truncated, looping, silent
and late-ending generations, silence trimmed, and an optional Whisper check.

`checks` and `attempts` import only numpy; `vad`, `asr` and `checker` load torch models
when asked to. The retry loop itself lives in the pipeline: it calls `QualityChecker.semantic`
after the semantic stage and `QualityChecker.audio` after EnCodec, seeds attempt a at chunk k
with `attempt_seed(seed, k, a)`, and sends `best_attempt` once every attempt has failed.
"""

from .attempts import AttemptScore, attempt_seed, best_attempt, passed, score
from .checks import (
    AUDIO_KINDS,
    RANDOM_WEIGHTS_BLIND,
    SEMANTIC_KINDS,
    CheckKind,
    CheckResult,
    QualityThresholds,
    check_loop,
    check_run_on,
    check_semantic,
    check_truncated,
    has_words,
)

__all__ = [
    "AUDIO_KINDS",
    "RANDOM_WEIGHTS_BLIND",
    "SEMANTIC_KINDS",
    "AttemptScore",
    "CheckKind",
    "CheckResult",
    "QualityThresholds",
    "attempt_seed",
    "best_attempt",
    "check_loop",
    "check_run_on",
    "check_semantic",
    "check_truncated",
    "has_words",
    "passed",
    "score",
]
