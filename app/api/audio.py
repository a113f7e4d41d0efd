"""Encoding 24 kHz mono audio into the response formats, and the streaming WAV header.

soundfile (libsndfile) writes wav, flac, ogg/vorbis, ogg/opus and mp3; PyAV (FFmpeg) writes
AAC in an ADTS stream, which libsndfile cannot.
"""

from __future__ import annotations

import io
import itertools
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import soundfile as sf

from bark_core.constants import SAMPLE_RATE

AudioFormat = Literal["wav", "flac", "ogg", "mp3", "opus", "aac", "pcm"]
STREAMABLE: frozenset[str] = frozenset({"wav", "pcm"})


@dataclass(frozen=True)
class FormatInfo:
    media_type: str
    extension: str
    sf_format: str | None = None  # soundfile container
    sf_subtype: str | None = None


FORMATS: dict[str, FormatInfo] = {
    "wav": FormatInfo("audio/wav", "wav", "WAV", "PCM_16"),
    "flac": FormatInfo("audio/flac", "flac", "FLAC", "PCM_16"),
    "ogg": FormatInfo("audio/ogg", "ogg", "OGG", "VORBIS"),
    "opus": FormatInfo("audio/ogg; codecs=opus", "opus", "OGG", "OPUS"),
    "mp3": FormatInfo("audio/mpeg", "mp3", "MP3", "MPEG_LAYER_III"),
    "aac": FormatInfo("audio/aac", "aac"),
    # Raw samples: s16le, 24 kHz, mono (the bytes of the websocket's binary frames too).
    "pcm": FormatInfo(f"audio/pcm; rate={SAMPLE_RATE}; channels=1; encoding=s16le", "pcm"),
}


def streaming_wav_header(sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 44-byte PCM16 mono WAV header whose RIFF and data sizes are 0xFFFFFFFF (unknown).

    The convention streaming servers use: readers take the data as running to end of file.
    """
    byte_rate = sample_rate * 2
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, byte_rate, 2, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def encode(pcm16: bytes, fmt: str) -> bytes:
    """Whole-file encoding of s16le mono PCM."""
    if fmt == "pcm":
        return pcm16
    samples = np.frombuffer(pcm16, dtype="<i2")
    if fmt == "aac":
        return _encode_aac(samples)
    info = FORMATS[fmt]
    buffer = io.BytesIO()
    # An empty clip is still a valid file of its format.
    with sf.SoundFile(buffer, "w", SAMPLE_RATE, 1, info.sf_subtype, format=info.sf_format) as f:
        if len(samples):
            f.write(samples)
    return buffer.getvalue()


def _encode_aac(samples: np.ndarray) -> bytes:
    import av  # deferred: FFmpeg's libraries are only needed for this one format

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        if len(samples):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):  # flush
            container.mux(packet)
    return buffer.getvalue()


def change_tempo(pcm16: bytes, speed: float) -> bytes:
    """Play `speed` times faster without changing pitch (FFmpeg's WSOLA `atempo` filter).

    atempo takes factors in [0.5, 2]; wider ones are a chain of such stages.
    """
    if speed == 1.0 or not pcm16:
        return pcm16
    import av  # deferred, as for AAC
    import av.filter

    factors = []
    left = speed
    while left < 0.5:
        factors.append(0.5)
        left /= 0.5
    while left > 2.0:
        factors.append(2.0)
        left /= 2.0
    factors.append(left)

    graph = av.filter.Graph()
    nodes = [
        graph.add_abuffer(
            format="s16", sample_rate=SAMPLE_RATE, layout="mono", time_base=Fraction(1, SAMPLE_RATE)
        )
    ]
    nodes += [graph.add("atempo", f"{factor:.6f}") for factor in factors]
    nodes.append(graph.add("abuffersink"))
    for upstream, downstream in itertools.pairwise(nodes):
        upstream.link_to(downstream)
    graph.configure()

    samples = np.frombuffer(pcm16, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = 0
    graph.push(frame)
    graph.push(None)  # flush: atempo holds back its last window otherwise
    out = []
    while True:
        try:
            pulled = graph.pull()
        except (av.error.EOFError, av.error.BlockingIOError):
            break
        out.append(pulled.to_ndarray().reshape(-1))
    return np.concatenate(out).astype("<i2").tobytes() if out else b""
