"""The optional ASR check: Whisper (through transformers) transcribes a chunk, and jiwer
measures how far the transcript is from the chunk's text.

Both sides are normalised the way Whisper's own evaluations do for any language
(transformers' `BasicTextNormalizer`: lower case, `[cues]` and punctuation removed). Scripts
written without spaces (Chinese, Japanese, Thai) are compared by character error rate, the
rest by word error rate. A model that cannot be loaded (no weights on disk and no hub) gives
an `AsrUnavailable` with the reason, once, and the caller runs without the check.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import SAMPLE_RATE
from .checks import CheckKind, CheckResult, QualityThresholds, _bounded
from .vad import resample

log = logging.getLogger(__name__)

WHISPER_RATE = 16_000
# Han, kana, Thai, Lao, Khmer, Myanmar: written without spaces between words
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


def normalize(text: str) -> str:
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    return " ".join(BasicTextNormalizer()(text).split())


def error_rate(reference: str, hypothesis: str) -> tuple[float, str]:
    """(error rate, "wer" or "cer") of a transcript against the text, both normalised;
    (0.0, "wer") when the text has nothing to compare."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0, "wer"
    if _UNSPACED.search(ref):
        return float(jiwer.cer(ref.replace(" ", ""), hyp.replace(" ", ""))), "cer"
    return float(jiwer.wer(ref, hyp)), "wer"


def check_transcript(transcript: str, text: str, t: QualityThresholds) -> CheckResult:
    """Score: the error rate of the transcript against the text."""
    rate, measure = error_rate(text, transcript)
    return _bounded(CheckKind.ASR, rate, t.max_error_rate, "max", f"{measure}; heard {transcript!r}")


@dataclass(frozen=True)
class AsrUnavailable:
    """The ASR model named could not be loaded: the check is off, and this says why."""

    model_id: str
    reason: str


class WhisperAsr:
    """A Whisper checkpoint loaded once (processor + model), on CPU or GPU."""

    def __init__(self, model_id: str, processor: Any, model: Any, language: str | None) -> None:
        self.model_id, self.processor, self.model, self.language = model_id, processor, model, language

    @classmethod
    def load(
        cls,
        model_id: str,
        device: str = "cpu",
        dtype: str = "float32",
        language: str | None = None,
        local_files_only: bool = False,
    ) -> WhisperAsr | AsrUnavailable:
        """The model, or why it could not be had (logged once, here). `language` None lets
        Whisper detect it; a code ("en") saves that step."""
        try:
            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor

            processor = WhisperProcessor.from_pretrained(model_id, local_files_only=local_files_only)
            model: Any = WhisperForConditionalGeneration.from_pretrained(
                model_id, local_files_only=local_files_only, dtype=getattr(torch, dtype)
            )
        except (OSError, ValueError) as exc:
            log.warning("ASR check off: %s could not be loaded (%s)", model_id, exc)
            return AsrUnavailable(model_id, f"{type(exc).__name__}: {exc}")
        return cls(model_id, processor, model.to(device).eval(), language)

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, max_new_tokens: int = 128) -> str:
        import torch

        x = resample(audio, sample_rate, WHISPER_RATE)
        features = self.processor(x, sampling_rate=WHISPER_RATE, return_tensors="pt").input_features
        features = features.to(self.model.device, self.model.dtype)
        limit = self.model.config.max_target_positions - 8  # room for the decoder prompt
        with torch.inference_mode():
            ids = self.model.generate(
                features, language=self.language, task="transcribe", max_new_tokens=min(max_new_tokens, limit)
            )
        return str(self.processor.batch_decode(ids, skip_special_tokens=True)[0]).strip()

    def check(self, audio: np.ndarray, text: str, t: QualityThresholds) -> CheckResult:
        """Transcribe and compare. Decoding stops at twice the text's length in tokens (a
        model babbling on, or random weights that never end, cannot run away)."""
        cap = 2 * len(self.processor.tokenizer(text).input_ids) + 8
        return check_transcript(self.transcribe(audio, max_new_tokens=cap), text, t)
