"""Encoders and the streaming WAV header, checked by real decoders."""

import io
import wave

import av
import numpy as np
import pytest
import soundfile as sf

from app.api.audio import FORMATS, encode, streaming_wav_header
from bark_core.audio import from_pcm16, to_pcm16

TONE = (np.sin(np.arange(12_000) * 2 * np.pi * 440 / 24_000) * 0.5).astype(np.float32)


def test_pcm16_roundtrip_clips_and_rounds():
    audio = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], dtype=np.float32)
    pcm = to_pcm16(audio)
    assert np.frombuffer(pcm, "<i2").tolist() == [-32767, -32767, 0, 16384, 32767, 32767]
    assert np.allclose(from_pcm16(pcm), np.clip(audio, -1, 1), atol=1e-4)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "opus", "mp3"])
def test_soundfile_formats_decode(fmt):
    data = encode(to_pcm16(TONE), fmt)
    audio, sr = sf.read(io.BytesIO(data))
    assert sr == 24_000
    # lossy codecs pad or trim a little; lossless ones are exact
    if fmt in ("wav", "flac"):
        assert len(audio) == len(TONE)
        assert np.allclose(audio, TONE, atol=1e-4)
    else:
        assert abs(len(audio) - len(TONE)) < 2_500


def test_aac_decodes_with_ffmpeg():
    data = encode(to_pcm16(TONE), "aac")
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        samples = sum(frame.samples for frame in container.decode(stream))
    assert samples >= len(TONE)


def test_pcm_is_raw():
    assert encode(b"\x01\x00\x02\x00", "pcm") == b"\x01\x00\x02\x00"
    assert FORMATS["pcm"].media_type.startswith("audio/pcm")


def test_streaming_header_is_read_to_end_of_file():
    pcm = to_pcm16(TONE)
    blob = streaming_wav_header() + pcm
    assert blob[4:8] == b"\xff\xff\xff\xff" and blob[40:44] == b"\xff\xff\xff\xff"
    with wave.open(io.BytesIO(blob)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24_000)
        assert w.readframes(w.getnframes()) == pcm
    audio, sr = sf.read(io.BytesIO(blob), dtype="int16")
    assert sr == 24_000 and audio.tobytes() == pcm


@pytest.mark.parametrize("speed", [0.25, 0.5, 1.5, 4.0])
def test_tempo_keeps_pitch_and_scales_length(speed):
    from app.api.audio import change_tempo

    tone = (np.sin(np.arange(48_000) * 2 * np.pi * 440 / 24_000) * 0.5).astype(np.float32)
    out = np.frombuffer(change_tempo(to_pcm16(tone), speed), dtype="<i2").astype(np.float32)
    assert len(out) == pytest.approx(len(tone) / speed, rel=0.03)
    middle = out[len(out) // 4 : 3 * len(out) // 4]
    spectrum = np.abs(np.fft.rfft(middle))
    peak_hz = np.argmax(spectrum) * 24_000 / len(middle)
    assert peak_hz == pytest.approx(440, abs=5)  # a time stretch, not a resample
