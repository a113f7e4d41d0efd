"""`QualityChecker`: what a worker loads once and calls for every attempt at every chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import SAMPLE_RATE
from .asr import AsrUnavailable, WhisperAsr
from .checks import CheckKind, CheckResult, QualityThresholds, check_semantic
from .vad import SpeechDetector, Trim, check_late_end, check_no_speech, trim


@dataclass(frozen=True)
class AudioVerdict:
    """The audio checks of one attempt, and its audio trimmed to the margin."""

    results: list[CheckResult]
    trim: Trim


class QualityChecker:
    """The thresholds, the VAD and (optionally) the ASR model of one worker."""

    def __init__(
        self,
        thresholds: QualityThresholds,
        detector: SpeechDetector | None,
        asr: WhisperAsr | AsrUnavailable | None = None,
    ) -> None:
        self.thresholds, self.detector, self.asr = thresholds, detector, asr

    @classmethod
    def load(
        cls,
        thresholds: QualityThresholds | None = None,
        asr_model: str | None = None,
        asr_device: str = "cpu",
        asr_dtype: str = "float32",
        asr_language: str | None = None,
    ) -> QualityChecker:
        """The VAD (it ships in its wheel; not loaded when no VAD check runs and nothing is
        trimmed) and, where `asr_model` names one, Whisper (an `AsrUnavailable` where it
        cannot be loaded: see `asr_unavailable`)."""
        t = thresholds or QualityThresholds()
        asr = None
        if asr_model and t.runs(CheckKind.ASR):
            asr = WhisperAsr.load(asr_model, asr_device, asr_dtype, asr_language)
        needs_vad = t.trim_margin_s is not None or t.runs(CheckKind.NO_SPEECH) or t.runs(CheckKind.LATE_END)
        return cls(t, SpeechDetector(t.vad_threshold) if needs_vad else None, asr)

    @property
    def asr_unavailable(self) -> str | None:
        """Why the ASR check asked for is off (for /readyz and the start-up log), else None."""
        return self.asr.reason if isinstance(self.asr, AsrUnavailable) else None

    @property
    def active(self) -> list[CheckKind]:
        """The checks that run, in CheckKind order (for /readyz: the others are off)."""
        t = self.thresholds
        on = {k for k in CheckKind if t.runs(k)}
        if self.detector is None:
            on -= {CheckKind.NO_SPEECH, CheckKind.LATE_END}
        if not isinstance(self.asr, WhisperAsr):
            on.discard(CheckKind.ASR)
        return [k for k in CheckKind if k in on]

    def semantic(self, tokens: np.ndarray, estimate_s: float | None) -> list[CheckResult]:
        """Between the semantic and the coarse stage: semantic ids (no EOS) of one attempt."""
        return check_semantic(tokens, estimate_s, self.thresholds)

    def audio(self, audio: np.ndarray, text: str, sample_rate: int = SAMPLE_RATE) -> AudioVerdict:
        """After EnCodec: the VAD checks, the trim, then the ASR check on the trimmed audio."""
        t = self.thresholds
        segments = self.detector.segments(audio, sample_rate) if self.detector else []
        results = []
        if self.detector and t.runs(CheckKind.NO_SPEECH):
            results.append(check_no_speech(segments, text, t))
        if segments and t.runs(CheckKind.LATE_END):
            results.append(check_late_end(segments, len(audio) / sample_rate, t))
        margin = t.trim_margin_s
        trimmed = Trim(audio, 0.0, 0.0) if margin is None else trim(audio, segments, margin, sample_rate)
        if isinstance(self.asr, WhisperAsr):
            results.append(self.asr.check(trimmed.audio, text, t))
        return AudioVerdict(results, trimmed)
