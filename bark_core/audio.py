"""Audio helpers: float waveform to 16-bit PCM and WAV files (24 kHz mono)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .constants import SAMPLE_RATE


def to_pcm16(audio: np.ndarray) -> bytes:
    """float [-1, 1] -> little-endian s16 bytes; out-of-range samples are clipped."""
    clipped = np.clip(np.nan_to_num(audio.astype(np.float32)), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    pcm = np.frombuffer(to_pcm16(audio), dtype="<i2")
    sf.write(buffer, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    Path(path).write_bytes(wav_bytes(audio, sample_rate))


BYTES_PER_SAMPLE = 2  # s16le


def pcm16_samples(pcm: bytes) -> int:
    """How many samples s16le bytes hold."""
    return len(pcm) // BYTES_PER_SAMPLE


def from_pcm16(data: bytes) -> np.ndarray:
    """s16le bytes -> float32 in [-1, 1]."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0
