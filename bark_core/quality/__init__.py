"""Checks on every chunk before it is sent (issue 16): run-on, truncated, looping, silent
and late-ending generations, silence trimmed, and an optional Whisper check.

`checks` and `attempts` import only numpy; `vad`, `asr` and `checker` load torch models
when asked to. The retry loop lives in the pipeline; per chunk k of a request seeded `seed`:

    checker = QualityChecker.load(thresholds, asr_model=...)     # once per worker
    for attempt a in 0 .. attempts-1:
        generator seeded attempt_seed(seed, k, a)                # a = 0 with checks on or off
        semantic ids -> sem = checker.semantic(ids, estimate_s)
        if not passed(sem) and a is not the last: record (a, sem); again with a + 1
        coarse -> fine -> EnCodec -> verdict = checker.audio(audio, text)
        results = sem + verdict.results
        if passed(results): send verdict.trim.audio; stop
        record (a, results, verdict.trim.audio); again with a + 1 unless a is the last
    all failed: send the kept audio of best_attempt(results of the attempts that have audio)

The last attempt always runs to audio, so there is always something to send. Trim before
the seams' fade and pause. Everything above is a function of (seed, k, a) and the checks are
deterministic on the CPU, so a fixed seed gives the same audio however often it retried.
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
