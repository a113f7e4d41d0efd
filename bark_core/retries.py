"""The retry loop of the chunk checks (bark_core.quality) inside a batch.

A chunk's semantic tokens are checked as soon as its semantic stage ends; a failing attempt
that is not the last goes back to the semantic queue with the generator of its next attempt
and re-enters the batch like any other row. After EnCodec its audio is checked and trimmed;
a failure there retries the whole chunk the same way. The last attempt always runs to audio,
so there is always something to send: the first attempt that passes, else the best-scoring
one that reached audio, marked. Every step is a function of (seed, chunk, attempt).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .longform import Attempt, Chunk
from .quality import RANDOM_WEIGHTS_BLIND, CheckResult, best_attempt, passed
from .quality.checker import QualityChecker


def checker_for_weights(checker: QualityChecker, random_weights: bool) -> QualityChecker:
    """On a random-weight checkpoint the checks in RANDOM_WEIGHTS_BLIND are off, and so is the
    trim (it follows the VAD, which finds no speech in noise); elsewhere `checker` itself."""
    if not random_weights:
        return checker
    t = dataclasses.replace(
        checker.thresholds, skip=checker.thresholds.skip | RANDOM_WEIGHTS_BLIND, trim_margin_s=None
    )
    return QualityChecker(t, None, None)


@dataclass(frozen=True)
class Outcome:
    """What is sent for a chunk whose attempts are over."""

    audio: np.ndarray  # decoded, trimmed to the margin, before the seams
    trimmed_s: float
    attempt_checks: list[list[CheckResult]]
    sent_attempt: int
    all_failed: bool


def _samples(chunk: Chunk) -> bool:
    """Whether another seed can change the chunk: not when every stage is greedy."""
    p = chunk.params
    return p.text_temp > 0 or p.waveform_temp > 0 or p.fine_temp > 0


def retry_semantic(chunk: Chunk, checker: QualityChecker, attempts: int) -> bool:
    """Check the chunk's semantic tokens; True when they failed and it goes round again
    (`chunk` then holds its next attempt), False when it goes on to coarse."""
    chunk.semantic_checks = checker.semantic(chunk.semantic, chunk.estimate_s)
    if passed(chunk.semantic_checks) or chunk.attempt >= attempts - 1 or chunk.params.text_temp == 0:
        return False  # greedy semantic sampling would draw the same tokens from any seed
    chunk.retry(Attempt(chunk.semantic_checks))
    return True


def check_audio(chunk: Chunk, checker: QualityChecker, attempts: int, decoded: np.ndarray) -> Outcome | None:
    """Check the decoded audio of the chunk's attempt: None when it failed and goes round
    again, else what to send (`chunk` then holds the tokens of the attempt sent)."""
    verdict = checker.audio(decoded, chunk.text)
    tokens = (chunk.semantic, chunk.coarse, chunk.fine)
    this = Attempt(
        chunk.semantic_checks + verdict.results, verdict.trim.audio, verdict.trim.removed_s, tokens
    )
    if not passed(this.results) and chunk.attempt < attempts - 1 and _samples(chunk):
        chunk.retry(this)
        return None
    tried = [*chunk.tried, this]
    sent = len(tried) - 1
    if not passed(this.results):
        with_audio = [i for i, a in enumerate(tried) if a.audio is not None]
        sent = with_audio[best_attempt([tried[i].results for i in with_audio])]
    best = tried[sent]
    assert best.audio is not None and best.tokens is not None
    chunk.semantic, chunk.coarse, chunk.fine = best.tokens
    return Outcome(best.audio, best.trimmed_s, [a.results for a in tried], sent, not passed(this.results))
