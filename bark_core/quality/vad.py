"""Speech in a chunk's audio: silero-vad finds it; the checks and the trim use what it found.

Why silero-vad: a small neural VAD (about 2 MB) made to tell speech from noise, music and
breath, which is what Bark's off-script output is made of; its wheel ships the model (no
download), and its base install needs only torch (torchaudio, which must never be installed
beside this torch, is only in its `audio` extra and is imported only to read files, which we
never ask it to do). webrtcvad, the other well-kept candidate, is WebRTC's frame-by-frame
Gaussian-mixture detector on sub-band energies: tried here at its most aggressive mode, it
called every frame of 3 s of white noise (sigma 0.1) speech, where silero found none.
silero's model module calls `torch.set_num_threads(1)` when imported; `SpeechDetector` puts
the caller's setting back, so Bark's stages keep their threads.

Checks (thresholds in `QualityThresholds`):
- `no_speech`: a text with words whose audio holds less than `min_speech_s` of speech;
- `late_end`: more than `max_trailing_s` of non-speech after the last speech (Bark babbling
  on in noises after its text). Not reported for audio with no speech at all: `no_speech`
  covers it.
`trim` cuts leading and trailing non-speech to `trim_margin_s`, whether or not the checks
passed; audio with no speech is left whole.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np

from ..constants import SAMPLE_RATE
from .checks import CheckKind, CheckResult, QualityThresholds, _bounded, has_words

VAD_RATE = 16_000  # silero-vad's native rate (it also takes 8 kHz)


@dataclass(frozen=True)
class Segment:
    """One stretch of speech, in seconds from the start of the audio."""

    start_s: float
    end_s: float


def resample(audio: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    """Polyphase resampling (scipy): 24 kHz -> 16 kHz is up 2, down 3."""
    from scipy.signal import resample_poly

    g = gcd(rate_from, rate_to)
    out = resample_poly(np.asarray(audio, dtype=np.float32), rate_to // g, rate_from // g)
    return out.astype(np.float32)


def _load_silero() -> Any:
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad

        with warnings.catch_warnings():  # torch.jit.load's deprecation notice, not ours to act on
            warnings.simplefilter("ignore", DeprecationWarning)
            return load_silero_vad()  # the JIT model from the wheel's data folder
    finally:
        torch.set_num_threads(threads)


class SpeechDetector:
    """silero-vad's model, loaded once per process and used from one thread at a time (the
    model keeps recurrent state between windows)."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self._model = _load_silero()
        self._lock = threading.Lock()

    def segments(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[Segment]:
        """The speech in `audio` (float mono), with no padding around it."""
        import torch
        from silero_vad import get_speech_timestamps_from_probs

        x = resample(audio, sample_rate, VAD_RATE) if sample_rate != VAD_RATE else audio
        if len(x) == 0:
            return []
        with self._lock, torch.inference_mode():
            probs = self._model.audio_forward(torch.from_numpy(np.ascontiguousarray(x)), VAD_RATE)
        found = get_speech_timestamps_from_probs(
            probs[0].tolist(),
            sampling_rate=VAD_RATE,
            threshold=self.threshold,
            speech_pad_ms=0,
            audio_length_samples=len(x),
        )
        return [Segment(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in found]


def check_no_speech(segments: list[Segment], text: str, t: QualityThresholds) -> CheckResult:
    """Score: seconds of speech found. A text with only cues (`[music]`) needs none."""
    speech = sum(s.end_s - s.start_s for s in segments)
    if not has_words(text):
        return _bounded(CheckKind.NO_SPEECH, speech, 0.0, "min", "the text has no words")
    return _bounded(CheckKind.NO_SPEECH, speech, t.min_speech_s, "min", f"{len(segments)} speech segments")


def check_late_end(segments: list[Segment], duration_s: float, t: QualityThresholds) -> CheckResult:
    """Score: seconds of audio after the last speech (segments must not be empty)."""
    trailing = max(0.0, duration_s - segments[-1].end_s)
    detail = f"speech ends at {segments[-1].end_s:.2f} s of {duration_s:.2f} s"
    return _bounded(CheckKind.LATE_END, trailing, t.max_trailing_s, "max", detail)


@dataclass(frozen=True)
class Trim:
    """The audio to send and what was cut from either end of it, in seconds."""

    audio: np.ndarray
    leading_s: float
    trailing_s: float

    @property
    def removed_s(self) -> float:
        return self.leading_s + self.trailing_s


def trim(audio: np.ndarray, segments: list[Segment], margin_s: float, sample_rate: int = SAMPLE_RATE) -> Trim:
    """Leading and trailing non-speech cut to `margin_s` (what is shorter stays); audio with
    no speech is returned whole."""
    if not segments:
        return Trim(audio, 0.0, 0.0)
    start = max(0, int((segments[0].start_s - margin_s) * sample_rate))
    end = min(len(audio), int(np.ceil((segments[-1].end_s + margin_s) * sample_rate)))
    return Trim(audio[start:end], start / sample_rate, (len(audio) - end) / sample_rate)
