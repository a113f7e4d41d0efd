"""Encoding 24 kHz mono audio into the response formats, whole or as a stream.

Whole files: soundfile (libsndfile) writes wav, flac, ogg/vorbis, ogg/opus and mp3; PyAV
(FFmpeg) writes AAC in an ADTS stream, which libsndfile cannot.

Streams (`open_stream`): one encoder stays open for the whole job and each chunk's PCM goes
in as it is decoded, so the bytes out are one valid stream, never files glued together.
PyAV writes mp3, flac, aac and opus into a sink that cannot seek (FFmpeg then leaves the
length unknown, as streaming muxers do: no Xing frame count in mp3, total samples 0 in FLAC's
STREAMINFO); libsndfile's mp3 and flac writers seek back at close to fill in a header, which a
stream cannot, and its Ogg writer hands out only full (~4 KB) pages. The wheels' FFmpeg has
no libvorbis, so Ogg Vorbis streams through libsndfile (front to back, a page at a time).
"""

from __future__ import annotations

import io
import itertools
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol

import numpy as np
import soundfile as sf

from bark_core.constants import SAMPLE_RATE

AudioFormat = Literal["wav", "flac", "ogg", "mp3", "opus", "aac", "pcm"]


@dataclass(frozen=True)
class FormatInfo:
    media_type: str
    extension: str
    sf_format: str | None = None  # soundfile container
    sf_subtype: str | None = None
    av_stream: tuple[str, str] | None = None  # (FFmpeg muxer, encoder) when PyAV streams it


FORMATS: dict[str, FormatInfo] = {
    "wav": FormatInfo("audio/wav", "wav", "WAV", "PCM_16"),
    "flac": FormatInfo("audio/flac", "flac", "FLAC", "PCM_16", av_stream=("flac", "flac")),
    "ogg": FormatInfo("audio/ogg", "ogg", "OGG", "VORBIS"),
    "opus": FormatInfo("audio/ogg; codecs=opus", "opus", "OGG", "OPUS", av_stream=("ogg", "libopus")),
    "mp3": FormatInfo("audio/mpeg", "mp3", "MP3", "MPEG_LAYER_III", av_stream=("mp3", "libmp3lame")),
    "aac": FormatInfo("audio/aac", "aac", av_stream=("adts", "aac")),
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
    encoder = _AvStream("aac")
    return encoder.feed(samples.tobytes()) + encoder.finish()


class StreamEncoder(Protocol):
    """Encodes one job's PCM as it arrives. Not thread-safe: feed one chunk at a time."""

    def feed(self, pcm16: bytes) -> bytes:
        """s16le mono PCM in; the bytes of the stream that are ready now out."""

    def finish(self) -> bytes:
        """Flush the encoder: the last bytes of the stream. Closes it."""

    def close(self) -> None:
        """Drop the encoder without finishing (an aborted stream). Idempotent."""


def open_stream(fmt: str) -> StreamEncoder:
    info = FORMATS[fmt]
    if fmt == "pcm":
        return _RawStream(b"")
    if fmt == "wav":
        return _RawStream(streaming_wav_header())
    if info.av_stream is not None:
        return _AvStream(fmt)
    return _SoundfileStream(fmt)


class _RawStream:
    def __init__(self, header: bytes) -> None:
        self.header = header

    def feed(self, pcm16: bytes) -> bytes:
        out, self.header = self.header + pcm16, b""
        return out

    def finish(self) -> bytes:
        return self.feed(b"")

    def close(self) -> None:
        pass


class _Sink:
    """A write-only, unseekable file for an encoder: what was written since the last take."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class _TellOnlySink(_Sink):
    """libsndfile asks where it is; a seek anywhere else would rewrite bytes already sent."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = 0

    def write(self, data: Any) -> int:
        self.pos += len(data)
        return super().write(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.pos + offset  # SEEK_CUR/END: at the end
        if target != self.pos:
            raise OSError("a streamed encoder cannot seek back")
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        return b""


# Ogg: close a page every 100 ms of audio (FFmpeg's default is 1 s), so a short chunk's audio
# leaves with it; a page header costs ~30 bytes.
_MUXER_OPTIONS: dict[str, dict[str, str]] = {"ogg": {"page_duration": "100000"}}


class _AvStream:
    """An FFmpeg muxer + encoder over an unseekable sink."""

    def __init__(self, fmt: str) -> None:
        import av  # deferred: FFmpeg's libraries are only needed for these formats

        muxer, codec = FORMATS[fmt].av_stream  # type: ignore[misc]
        self._av = av
        self.sink = _Sink()
        # flush_packets: hand each packet to the sink at once (FFmpeg buffers 32 KB otherwise)
        options = {"flush_packets": "1", **_MUXER_OPTIONS.get(muxer, {})}
        self.container: Any = av.open(self.sink, "w", format=muxer, options=options)
        self.stream: Any = self.container.add_stream(codec, rate=SAMPLE_RATE, layout="mono")

    def _mux(self, frame: Any) -> bytes:
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        return self.sink.take()

    def feed(self, pcm16: bytes) -> bytes:
        if not pcm16:
            return self.sink.take()
        samples = np.frombuffer(pcm16, dtype="<i2").reshape(1, -1)
        frame = self._av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        return self._mux(frame)

    def finish(self) -> bytes:
        out = self._mux(None)  # flush the encoder's look-ahead
        self.close()
        return out + self.sink.take()

    def close(self) -> None:
        if self.container is not None:
            self.container.close()  # writes the trailer, if any, into the sink
            self.container = None


class _SoundfileStream:
    """libsndfile's Ogg Vorbis writer: pages go out front to back, each once it is full."""

    def __init__(self, fmt: str) -> None:
        info = FORMATS[fmt]
        self.sink = _TellOnlySink()
        self.file: sf.SoundFile | None = sf.SoundFile(
            self.sink, "w", SAMPLE_RATE, 1, info.sf_subtype, format=info.sf_format
        )

    def feed(self, pcm16: bytes) -> bytes:
        if pcm16 and self.file is not None:
            self.file.write(np.frombuffer(pcm16, dtype="<i2"))
        return self.sink.take()

    def finish(self) -> bytes:
        self.close()
        return self.sink.take()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


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
