"""Every format streams: one encoder per job, fed chunk by chunk, giving one valid stream.

The unit tests feed app.api.audio.open_stream directly; the end-to-end ones stream through
/synthesize and /v1/audio/speech and compare the arrival of the first bytes with the time the
worker wrote the job's last chunk to Redis (the entry id of the output stream is its
millisecond timestamp on the same clock).
"""

from __future__ import annotations

import base64
import io
import json
import time

import av
import numpy as np
import pytest
import redis
import soundfile as sf

from app.api.audio import open_stream
from app.queue.keys import Keys
from tests.app.conftest import E2E_PREFIX

SR = 24_000
COMPRESSED = ["mp3", "opus", "aac", "flac", "ogg"]
# libsndfile cannot read a FLAC whose STREAMINFO leaves the length unknown (what a stream
# must send), nor AAC at all: PyAV (FFmpeg) decodes those.
SOUNDFILE_READS = {"wav", "mp3", "opus", "ogg"}
LOSSY_SLACK_S = 0.1  # encoder delay and padding (mp3 ~1,152 samples, aac 1,024)
SIX_CHUNKS = " ".join(
    f"This is sentence number {i}, which is long enough to fill a chunk of text by itself." for i in range(12)
)


def _chunks(n: int = 3, seconds: float = 1.5) -> list[bytes]:
    """Tones under noise: broadband like speech (a pure tone is so cheap to code that Ogg
    Vorbis, which libsndfile hands out a ~4 KB page at a time, would hold it back a chunk)."""
    t = np.arange(int(SR * seconds))
    noise = np.random.default_rng(0).standard_normal(len(t)) * 2000
    tones = [np.sin(t * 2 * np.pi * (220 + 110 * i) / SR) * 8000 for i in range(n)]
    return [(tone + noise).astype("<i2").tobytes() for tone in tones]


def _av_decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        return np.concatenate(frames), stream.rate


def _check_decodes(data: bytes, fmt: str, pcm: bytes) -> None:
    """Whole with PyAV (and soundfile where it reads it), as long as the PCM."""
    expected_s = len(pcm) / 2 / SR
    samples, rate = _av_decode(data)
    assert len(samples) / rate == pytest.approx(expected_s, abs=LOSSY_SLACK_S), fmt
    if fmt == "flac":  # lossless: the very samples
        assert samples.astype("<i2").tobytes() == pcm
    if fmt in SOUNDFILE_READS:
        audio, sr = sf.read(io.BytesIO(data), dtype="int16")
        assert sr == SR
        assert len(audio) / sr == pytest.approx(expected_s, abs=LOSSY_SLACK_S), fmt


@pytest.mark.parametrize("fmt", [*COMPRESSED, "wav"])
def test_stream_encoder_gives_one_stream_bytes_from_the_first_chunk(fmt):
    chunks = _chunks()
    encoder = open_stream(fmt)
    pieces = [encoder.feed(c) for c in chunks]
    pieces.append(encoder.finish())
    assert all(pieces[:-1]), [len(p) for p in pieces]  # bytes out after every chunk, the first too
    data = b"".join(pieces)
    _check_decodes(data, fmt, b"".join(chunks))
    # one stream, not files glued together: one stream header
    magic = {"wav": b"RIFF", "flac": b"fLaC", "ogg": b"\x4fggS\x00\x02", "opus": b"OpusHead"}
    if fmt in magic:
        assert data.count(magic[fmt]) == 1


def test_a_stream_aborted_midway_releases_its_encoder():
    encoder = open_stream("mp3")
    assert encoder.feed(_chunks(1)[0])
    encoder.close()
    encoder.close()  # idempotent: the responder closes in `finally` after finish() too


def _last_chunk_written_at(redis_url: str, job_id: str) -> float:
    client = redis.Redis.from_url(redis_url)
    entries = client.xrange(Keys(E2E_PREFIX).out(job_id))
    chunk_ids = [entry_id for entry_id, fields in entries if fields.get(b"type") == b"chunk"]
    assert len(chunk_ids) >= 3, entries
    return int(chunk_ids[-1].split(b"-")[0]) / 1000


def _stream(client, path: str, body: dict) -> tuple[bytes, float, str, dict]:
    with client.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["transfer-encoding"] == "chunked"
        first_at = 0.0
        parts = []
        for part in r.iter_bytes():
            if part and not first_at:
                first_at = time.time()
            parts.append(part)
        return b"".join(parts), first_at, r.headers["x-bark-job-id"], dict(r.headers)


@pytest.mark.service
@pytest.mark.parametrize("fmt", COMPRESSED)
def test_synthesize_streams_every_format_before_the_last_chunk(client, redis_url, fmt):
    body = {"text": SIX_CHUNKS, "seed": 9, "format": fmt, "stream": True}
    data, first_at, job_id, _ = _stream(client, "/synthesize", body)
    assert first_at < _last_chunk_written_at(redis_url, job_id)
    pcm = client.post("/synthesize", json={**body, "format": "pcm", "stream": False}).content
    _check_decodes(data, fmt, pcm)


@pytest.mark.service
@pytest.mark.parametrize("fmt", ["mp3", "aac"])
def test_openai_speech_streams_compressed_formats(client, redis_url, fmt):
    body = {"model": "tts-1", "input": SIX_CHUNKS, "voice": "alloy", "response_format": fmt}
    data, first_at, job_id, headers = _stream(client, "/v1/audio/speech", body)
    assert "content-length" not in headers
    assert first_at < _last_chunk_written_at(redis_url, job_id)
    samples, rate = _av_decode(data)
    assert len(samples) / rate > 1.0  # six chunks of audio, whole


@pytest.mark.service
def test_openai_sse_sends_a_delta_per_chunk_that_join_into_one_stream(client):
    body = {
        "model": "tts-1",
        "input": SIX_CHUNKS,
        "voice": "alloy",
        "response_format": "opus",
        "stream_format": "sse",
    }
    r = client.post("/v1/audio/speech", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    deltas = [base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"]
    assert events[-1]["type"] == "speech.audio.done"
    assert len(deltas) >= 6  # one per text chunk (and the encoder's tail), not one at the end
    samples = events[-1]["usage"]["output_tokens"]
    data = b"".join(deltas)
    assert data.count(b"OpusHead") == 1
    decoded, rate = _av_decode(data)
    assert len(decoded) / rate == pytest.approx(samples / SR, abs=LOSSY_SLACK_S)
