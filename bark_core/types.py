"""What callers hand to the pipeline and what it yields back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .params import GenerationParams
from .voices import VoicePreset


@dataclass
class SynthesisRequest:
    """One row of a batch: its own text, voice, parameters, seed and cancel flag."""

    text: str
    voice: VoicePreset | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    seed: int = 0
    #: polled between decode steps; True drops the row within one step
    should_cancel: Callable[[], bool] | None = None


@dataclass
class AudioChunk:
    """The audio of one text chunk of one request, yielded as soon as it is decoded."""

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

    @property
    def is_last(self) -> bool:
        return self.chunk_index == self.n_chunks - 1

    @property
    def duration_s(self) -> float:
        return len(self.audio) / 24_000

    def as_voice(self) -> VoicePreset:
        """This chunk's full generation, usable as a history prompt (rolling continuity)."""
        return VoicePreset(semantic=self.semantic, coarse=self.coarse, fine=self.fine)
