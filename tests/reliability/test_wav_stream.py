"""The streamed WAV, byte for byte: every parser at hand reads it, it has one RIFF header, its
frames are its PCM bytes / 2, and a stream cut by a crash makes the client fail loudly."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import threading
import wave

import av
import httpx
import pytest
import soundfile as sf

from .reliability_kit import new_prefix, record, sentences, wait_until

BODY = {"text": sentences(3, "-wav"), "seed": 77, "format": "wav"}


@pytest.fixture
def streamed(make_api, workers) -> tuple[bytes, bytes]:
    """(the streamed WAV, the whole-file WAV) of one job, same seed."""
    api = make_api()
    with httpx.Client(base_url=api.url, timeout=120) as http:
        with http.stream("POST", "/synthesize", json={**BODY, "stream": True}) as r:
            assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
            assert "content-length" not in r.headers  # chunked: the length is not known up front
            data = r.read()
        whole = http.post("/synthesize", json=BODY)
    assert whole.status_code == 200
    return data, whole.content


def test_streamed_wav_parses_everywhere_with_one_header(streamed, tmp_path):
    data, whole = streamed
    pcm = data[44:]
    frames = len(pcm) // 2
    assert len(pcm) % 2 == 0 and frames > 0
    riff, riff_size, wave_id = struct.unpack("<4sI4s", data[:12])
    assert (riff, wave_id, riff_size) == (b"RIFF", b"WAVE", 0xFFFFFFFF)
    assert data[36:40] == b"data" and struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF
    assert data.count(b"WAVEfmt ") == 1  # exactly one header, none repeated mid-stream

    decoded = {}
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    decoded["soundfile"] = (len(audio), rate)
    with wave.open(io.BytesIO(data)) as w:  # stdlib: trusts the header, reads to end of file
        decoded["wave"] = (len(w.readframes(2**31 - 1)) // 2, w.getframerate())
    with av.open(io.BytesIO(data)) as container:  # FFmpeg's demuxer and decoder, via PyAV
        samples = sum(f.samples for f in container.decode(audio=0))
        decoded["pyav"] = (samples, container.streams.audio[0].rate)
    ffprobe = shutil.which("ffprobe")
    if ffprobe:
        path = tmp_path / "stream.wav"
        path.write_bytes(data)
        out = subprocess.run(
            [ffprobe, "-v", "error", "-count_packets", "-show_streams", "-of", "json", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        stream = json.loads(out.stdout)["streams"][0]
        decoded["ffprobe"] = (int(stream.get("duration_ts", -1)), int(stream["sample_rate"]))
    record(
        "wav_stream",
        bytes=len(data),
        pcm_frames=frames,
        decoded=decoded,
        riff_headers=data.count(b"RIFF"),
        ffprobe_installed=bool(ffprobe),
    )
    for parser, (n, rate) in decoded.items():
        assert rate == 24_000, parser
        assert n == frames, (parser, n, frames)
    # The stream's samples are the whole file's samples.
    assert sf.read(io.BytesIO(whole), dtype="int16")[0].tobytes() == pcm


def test_stream_cut_by_a_crash_makes_the_client_raise(make_api, make_workers):
    prefix = new_prefix("cut")
    pool = make_workers(prefix, 1)  # the only worker: nobody can take the job over
    api = make_api(prefix)
    received = bytearray()
    killed = threading.Event()
    body = {**BODY, "text": sentences(8), "stream": True}
    with (
        httpx.Client(base_url=api.url, timeout=60) as http,
        http.stream("POST", "/synthesize", json=body) as r,
    ):
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for piece in r.iter_bytes():
                received += piece
                if not killed.is_set() and len(received) > 44:
                    pool.kill(pool.alive()[0].pid)
                    killed.set()
    assert killed.is_set()
    # What did arrive is a header and some audio, and the transfer was visibly incomplete:
    # a client that saves it must have seen the error above.
    assert received[:4] == b"RIFF" and len(received) > 44
    with httpx.Client(base_url=api.url, timeout=10) as http:
        assert wait_until(lambda: http.get("/readyz").status_code == 503, 10)
        whole = http.post("/synthesize", json=BODY)
    assert whole.status_code == 503  # not a short file: an error with a status
    record(
        "wav_stream_cut",
        client_raised="httpx.RemoteProtocolError",
        bytes_before_cut=len(received),
        whole_file_status=whole.status_code,
    )
