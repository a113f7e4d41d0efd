"""The typed result of a check, its thresholds, and the cheap checks on semantic tokens.

The semantic checks run between the semantic and the coarse stage, where a bad take costs
least to redo: coarse and fine spend most of a chunk's time.

- `run_on`: far more semantic tokens than the chunk's text should take (Bark babbling past
  the end of its text, often to the token cap);
- `truncated`: far fewer (words skipped, or an early EOS);
- `loop`: the same token n-gram repeated back to back for seconds.

Every threshold is in `QualityThresholds`. Its defaults are set from Bark's published token
rate (49.9 semantic tokens a second) and the planner's duration estimate; they have not been
calibrated on real weights (no machine here can load them).

This module imports only numpy, so the API process can validate settings with it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Literal

import numpy as np

from ..constants import SEMANTIC_RATE_HZ


class CheckKind(str, Enum):
    """What a check looks for; the value is the label in events and metrics."""

    RUN_ON = "run_on"
    TRUNCATED = "truncated"
    LOOP = "loop"
    NO_SPEECH = "no_speech"
    LATE_END = "late_end"  # speech ends long before the audio does
    ASR = "asr"


SEMANTIC_KINDS = frozenset({CheckKind.RUN_ON, CheckKind.TRUNCATED, CheckKind.LOOP})
AUDIO_KINDS = frozenset({CheckKind.NO_SPEECH, CheckKind.LATE_END, CheckKind.ASR})
# Checks whose signal a random-weight checkpoint cannot give: it never emits EOS (every
# chunk runs to its cap, so `run_on` fails and `truncated` cannot), its audio is not speech
# (the VAD finds none) and Whisper hears no words in it. Only `loop` still means something.
RANDOM_WEIGHTS_BLIND = frozenset(
    {CheckKind.RUN_ON, CheckKind.TRUNCATED, CheckKind.NO_SPEECH, CheckKind.LATE_END, CheckKind.ASR}
)


@dataclass(frozen=True)
class CheckResult:
    """One check on one attempt: `score` is the measured value, `threshold` the bound it is
    held to (`max`: score must not exceed it; `min`: score must reach it)."""

    kind: CheckKind
    passed: bool
    score: float
    threshold: float
    bound: Literal["max", "min"]
    detail: str = ""

    @property
    def severity(self) -> float:
        """0 for a pass; else how far past its threshold, relative to it (0.5 = 50% over)."""
        if self.passed:
            return 0.0
        if self.bound == "max":
            return (self.score - self.threshold) / self.threshold if self.threshold > 0 else self.score
        return (self.threshold - self.score) / self.threshold if self.threshold > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for chunk events."""
        return {**asdict(self), "kind": self.kind.value}


def _bounded(kind: CheckKind, score: float, threshold: float, bound: Literal["max", "min"], detail: str):
    passed = score <= threshold if bound == "max" else score >= threshold
    return CheckResult(kind, passed, round(float(score), 4), round(float(threshold), 4), bound, detail)


@dataclass(frozen=True)
class QualityThresholds:
    """Every threshold of every check, with its default. None of them is calibrated on real
    weights: they follow from Bark's token rate and the planner's estimate."""

    #: run_on: semantic tokens / the estimate's tokens above this fails ...
    max_length_ratio: float = 2.5
    #: truncated: ... and below this fails;
    min_length_ratio: float = 0.35
    #: ... but a difference of under this many seconds never does (short texts' estimates
    #: are coarse: "Hi." is estimated at a fraction of a second and spoken in one or two)
    length_slack_s: float = 2.0
    #: loop: an n-gram repeated back to back over more than this many seconds fails ...
    loop_max_s: float = 2.5
    #: ... counting n-grams of 1 to this many tokens (50 = 1 s: a word or two) ...
    loop_max_ngram: int = 50
    #: ... repeated at least this many times
    loop_min_repeats: int = 3
    #: no_speech: a text with words needs at least this much speech (VAD) ...
    min_speech_s: float = 0.3
    #: late_end: non-speech after the last speech longer than this fails
    max_trailing_s: float = 3.0
    #: leading and trailing non-speech is trimmed to this margin (None: not trimmed)
    trim_margin_s: float | None = 0.2
    #: silero-vad's speech probability threshold (its own default)
    vad_threshold: float = 0.5
    #: asr: word error rate (character error rate for unspaced scripts) above this fails
    max_error_rate: float = 0.5
    #: checks not run at all (e.g. RANDOM_WEIGHTS_BLIND on a random checkpoint)
    skip: frozenset[CheckKind] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not 0 < self.min_length_ratio < 1 < self.max_length_ratio:
            raise ValueError("need 0 < min_length_ratio < 1 < max_length_ratio")
        for name in ("length_slack_s", "loop_max_s", "min_speech_s", "max_trailing_s", "trim_margin_s"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.loop_max_ngram < 1 or self.loop_min_repeats < 2:
            raise ValueError("need loop_max_ngram >= 1 and loop_min_repeats >= 2")
        if not 0 < self.vad_threshold < 1 or self.max_error_rate <= 0:
            raise ValueError("need 0 < vad_threshold < 1 and max_error_rate > 0")

    def runs(self, kind: CheckKind) -> bool:
        return kind not in self.skip


_CUE = re.compile(r"\[[^\]]*\]")


def has_words(text: str) -> bool:
    """Whether the text holds anything to be spoken besides `[cues]` (letters or digits)."""
    return any(ch.isalnum() for ch in _CUE.sub(" ", text))


def check_run_on(n_tokens: int, estimate_s: float, t: QualityThresholds) -> CheckResult:
    """Too many semantic tokens for the text. Score: tokens / the estimate's tokens."""
    estimate_s = max(estimate_s, 1.0 / SEMANTIC_RATE_HZ)
    ratio = n_tokens / (estimate_s * SEMANTIC_RATE_HZ)
    threshold = max(t.max_length_ratio, 1.0 + t.length_slack_s / estimate_s)
    detail = f"{n_tokens} tokens ({n_tokens / SEMANTIC_RATE_HZ:.2f} s) for an estimate of {estimate_s:.2f} s"
    return _bounded(CheckKind.RUN_ON, ratio, threshold, "max", detail)


def check_truncated(n_tokens: int, estimate_s: float, t: QualityThresholds) -> CheckResult:
    """Too few semantic tokens for the text. Score: tokens / the estimate's tokens. Never
    below one token's worth: no tokens at all always fails."""
    estimate_s = max(estimate_s, 1.0 / SEMANTIC_RATE_HZ)
    ratio = n_tokens / (estimate_s * SEMANTIC_RATE_HZ)
    floor = 1.0 / (estimate_s * SEMANTIC_RATE_HZ)
    threshold = max(floor, min(t.min_length_ratio, 1.0 - t.length_slack_s / estimate_s))
    detail = f"{n_tokens} tokens ({n_tokens / SEMANTIC_RATE_HZ:.2f} s) for an estimate of {estimate_s:.2f} s"
    return _bounded(CheckKind.TRUNCATED, ratio, threshold, "min", detail)


def longest_loop(tokens: np.ndarray, max_ngram: int, min_repeats: int) -> tuple[int, int]:
    """(span in tokens, n) of the longest stretch that is one n-gram (n <= max_ngram)
    repeated back to back at least `min_repeats` times; (0, 0) if there is none."""
    tokens = np.asarray(tokens).ravel()
    best = (0, 0)
    for n in range(1, min(max_ngram, len(tokens) // min_repeats) + 1):
        same = np.concatenate(([False], tokens[n:] == tokens[:-n], [False]))
        edges = np.flatnonzero(np.diff(same.astype(np.int8)))
        if not len(edges):
            continue
        run = int((edges[1::2] - edges[::2]).max())  # longest run of tokens[i] == tokens[i + n]
        span = run + n  # those positions and the n before the first repeat
        if span >= min_repeats * n and span > best[0]:
            best = (span, n)
    return best


def check_loop(tokens: np.ndarray, t: QualityThresholds) -> CheckResult:
    """An n-gram repeated back to back. Score: the longest such stretch, in seconds."""
    span, n = longest_loop(tokens, t.loop_max_ngram, t.loop_min_repeats)
    detail = f"a {n}-token n-gram repeated {span / n:.1f} times" if n else "no repeated n-gram"
    return _bounded(CheckKind.LOOP, span / SEMANTIC_RATE_HZ, t.loop_max_s, "max", detail)


def check_semantic(tokens: np.ndarray, estimate_s: float | None, t: QualityThresholds) -> list[CheckResult]:
    """The semantic checks of one attempt at one chunk (semantic ids without EOS), in a fixed
    order, those in `t.skip` left out. `estimate_s` is the planner's estimate for the text;
    without one (None) only the loop check runs."""
    n = int(np.asarray(tokens).size)
    results = []
    if estimate_s is not None and t.runs(CheckKind.RUN_ON):
        results.append(check_run_on(n, estimate_s, t))
    if estimate_s is not None and t.runs(CheckKind.TRUNCATED):
        results.append(check_truncated(n, estimate_s, t))
    if t.runs(CheckKind.LOOP):
        results.append(check_loop(tokens, t))
    return results
