"""What callers hand to the pipeline and what it yields back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .constants import SAMPLE_RATE
from .params import GenerationParams
from .quality import CheckResult
from .voices import VoicePreset


@dataclass
class SynthesisRequest:
    """One row of a batch: its own text, voice, parameters, seed and cancel flag."""

    text: str
    voice: VoicePreset | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    seed: int = 0
    #: polled between decode steps; True drops the request within one step
    should_cancel: Callable[[], bool] | None = None
    #: the text's language ("en", "zh", ...; the voice preset's, e.g. voices.language_of),
    #: for sentence splitting; None: guessed from the script
    language: str | None = None
    #: resuming a request: its chunks before this one are not generated again (a client has
    #: them); the planner splits the same text the same way, so the chunk indices agree
    start_chunk: int = 0
    #: the generations of the chunks before `start_chunk`, by chunk index (at least what the
    #: continuity needs: chunk 0 for anchor, chunk start_chunk-1 for rolling), so the chunks
    #: after continue from exactly the voice the client already heard
    history: Mapping[int, VoicePreset] = field(default_factory=dict)


@dataclass
class AudioChunk:
    """The audio of one text chunk of one request, yielded in order once it is decoded.

    `audio` is what goes out: faded in and out at its ends, and opened by `pause_s` of silence
    for every chunk after the first (bark_core.seams); `duration_s` includes that pause."""

    request_index: int
    chunk_index: int
    n_chunks: int
    text: str
    audio: np.ndarray  # float32, mono, 24 kHz, in [-1, 1]
    semantic: np.ndarray  # int64 (T_sem,)
    coarse: np.ndarray  # int64 (2, T)
    fine: np.ndarray  # int64 (8, T)
    #: seconds spent per stage for this chunk (batch time shared equally among its rows)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: rows in each stage's batched run that carried this chunk
    stage_batch: dict[str, int] = field(default_factory=dict)
    #: the planner's estimate of the chunk's spoken duration, seconds
    estimate_s: float | None = None
    #: the silence at the start of `audio`, seconds
    pause_s: float = 0.0
    #: attempts made at this chunk (1: no retry; bark_core.quality)
    attempts: int = 1
    #: every attempt's check results, in attempt order (empty lists: checks off)
    attempt_checks: list[list[CheckResult]] = field(default_factory=list)
    #: the attempt whose audio this is
    sent_attempt: int = 0
    #: every attempt failed a check: this is the best-scoring one (bark_core.quality.best_attempt)
    all_failed: bool = False
    #: leading and trailing non-speech cut from the decoded audio, seconds
    trimmed_s: float = 0.0

    @property
    def is_last(self) -> bool:
        return self.chunk_index == self.n_chunks - 1

    @property
    def checks(self) -> list[CheckResult]:
        """The check results of the attempt sent (empty: checks off)."""
        return self.attempt_checks[self.sent_attempt] if self.attempt_checks else []

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def as_voice(self) -> VoicePreset:
        """This chunk's full generation, usable as a history prompt (anchor and rolling
        continuity)."""
        return VoicePreset(semantic=self.semantic, coarse=self.coarse, fine=self.fine)
