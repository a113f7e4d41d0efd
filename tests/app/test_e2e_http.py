"""POST /synthesize end to end: uvicorn, Redis, two worker processes on the tiny checkpoint."""

from __future__ import annotations

import io
import time
import wave

import av
import httpx
import numpy as np
import pytest
import soundfile as sf

from bark_core.voices import BUILTIN_VOICE_IDS
from tests.support.presets import preset_npz

LONG = " ".join(
    f"This is sentence number {i}, which is long enough to fill a chunk of text by itself." for i in range(6)
)  # three text chunks


def test_whole_wav_has_exact_headers(client):
    r = client.post("/synthesize", json={"text": "Hello there.", "seed": 3})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.headers["x-bark-seed"] == "3"
    assert len(r.headers["x-request-id"]) == 32
    assert "transfer-encoding" not in r.headers
    audio, sr = sf.read(io.BytesIO(r.content))
    assert sr == 24000 and audio.ndim == 1 and len(audio) > 0
    assert float(r.headers["x-bark-audio-duration"]) == pytest.approx(len(audio) / 24000, abs=1e-3)


@pytest.mark.parametrize(
    ("fmt", "media"),
    [("flac", "audio/flac"), ("ogg", "audio/ogg"), ("mp3", "audio/mpeg"), ("opus", "audio/ogg; codecs=opus")],
)
def test_compressed_formats(client, fmt, media):
    r = client.post("/synthesize", json={"text": "Hi.", "format": fmt, "seed": 1})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media
    assert int(r.headers["content-length"]) == len(r.content)
    audio, sr = sf.read(io.BytesIO(r.content))
    assert sr == 24000 and len(audio) > 0


def test_aac_and_pcm(client):
    r = client.post("/synthesize", json={"text": "Hi.", "format": "aac", "seed": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/aac"
    with av.open(io.BytesIO(r.content)) as c:
        assert sum(f.samples for f in c.decode(audio=0)) > 0
    pcm = client.post("/synthesize", json={"text": "Hi.", "format": "pcm", "seed": 1})
    wav = client.post("/synthesize", json={"text": "Hi.", "format": "wav", "seed": 1})
    assert pcm.headers["content-type"].startswith("audio/pcm")
    # PCM is the WAV's samples, byte for byte (same seed, same audio)
    audio, _ = sf.read(io.BytesIO(wav.content), dtype="int16")
    assert audio.tobytes() == pcm.content


def test_same_seed_same_audio_other_seed_other_audio(client):
    body = {"text": "Repeat after me.", "format": "pcm"}
    a = client.post("/synthesize", json={**body, "seed": 11}).content
    b = client.post("/synthesize", json={**body, "seed": 11}).content
    c = client.post("/synthesize", json={**body, "seed": 12}).content
    assert a == b and a != c


def test_streamed_wav_parses_with_soundfile_and_wave(client):
    body = {"text": LONG, "stream": True, "seed": 5}
    with client.stream("POST", "/synthesize", json=body) as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in r.headers
        assert r.headers["x-bark-seed"] == "5"
        pieces = list(r.iter_bytes())
    blob = b"".join(pieces)
    assert blob[:4] == b"RIFF" and blob[4:8] == b"\xff\xff\xff\xff"
    assert blob[40:44] == b"\xff\xff\xff\xff"
    with wave.open(io.BytesIO(blob)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        frames = w.readframes(w.getnframes())
    audio, sr = sf.read(io.BytesIO(blob), dtype="int16")
    assert sr == 24000 and audio.tobytes() == frames
    # the stream is the same audio as the whole file with the same seed
    whole = client.post("/synthesize", json={**body, "stream": False, "format": "pcm"}).content
    assert frames == whole


def test_streamed_pcm(client):
    body = {"text": "Stream me.", "stream": True, "format": "pcm", "seed": 2}
    with client.stream("POST", "/synthesize", json=body) as r:
        assert r.headers["content-type"].startswith("audio/pcm")
        data = r.read()
    assert len(data) > 0 and len(data) % 2 == 0


def test_unknown_voice_is_404(client):
    r = client.post("/synthesize", json={"text": "hi", "voice": "v2/xx_speaker_99"})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "voice"
    assert r.json()["error"]["type"] == "unknown_voice"


def test_builtin_voice_and_generation_knobs(client):
    r = client.post(
        "/synthesize",
        json={
            "text": "Voices.",
            "voice": "v2/en_speaker_3",
            "seed": 1,
            "text_temp": 0,
            "waveform_temp": 0,
            "fine_temp": 0,
            "min_eos_p": 0.5,
            "top_k": 50,
            "top_p": 0.9,
            "continuity": "rolling",
            "max_duration_s": 0.2,
            "format": "pcm",
        },
    )
    assert r.status_code == 200, r.text
    # the server caps chunk duration too (0.25 s in tests): 0.2 s asked, at most that back
    assert 0 < len(r.content) // 2 <= int(0.2 * 24000) + 320


def test_voice_upload_use_and_delete(client):
    listing = client.get("/voices").json()
    assert listing["demo"] is True and "RANDOM" in listing["warning"]
    assert listing["openai_voices"]["alloy"] == "v2/en_speaker_0"
    builtin = {v["id"] for v in listing["data"] if v["source"] == "builtin"}
    assert "v2/en_speaker_6" in builtin and len(builtin) == len(BUILTIN_VOICE_IDS)

    files = {"file": ("mine.npz", preset_npz(), "application/octet-stream")}
    r = client.post("/voices", data={"id": "my-voice"}, files=files)
    assert r.status_code == 201, r.text
    assert r.json() == {"id": "my-voice", "language": None, "language_name": None, "source": "uploaded"}
    assert client.post("/voices", data={"id": "my-voice"}, files=files).status_code == 409
    ids = {v["id"] for v in client.get("/voices").json()["data"]}
    assert "my-voice" in ids

    r = client.post("/synthesize", json={"text": "Mine.", "voice": "my-voice", "format": "pcm"})
    assert r.status_code == 200 and len(r.content) > 0

    # replaced with different arrays: the workers' LRU must not serve the old version
    r = client.post(
        "/voices",
        params={"overwrite": "true"},
        data={"id": "my-voice"},
        files={"file": ("b.npz", preset_npz(1), "application/octet-stream")},
    )
    assert r.status_code == 201
    r = client.post("/synthesize", json={"text": "Mine.", "voice": "my-voice", "format": "pcm"})
    assert r.status_code == 200

    assert client.delete("/voices/my-voice").status_code == 204
    assert client.delete("/voices/my-voice").status_code == 404
    assert client.post("/synthesize", json={"text": "x", "voice": "my-voice"}).status_code == 404


@pytest.mark.parametrize(
    ("voice_id", "payload", "status", "param"),
    [
        ("../etc", None, 422, "id"),
        ("v2/en_speaker_0", None, 422, "id"),
        ("ok", b"not a zip", 422, "file"),
    ],
)
def test_voice_upload_is_validated(client, voice_id, payload, status, param):
    files = {"file": ("x.npz", payload or preset_npz(), "application/octet-stream")}
    r = client.post("/voices", data={"id": voice_id}, files=files)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_bad_preset_arrays_name_the_field(client):
    buffer = io.BytesIO()
    np.savez(
        buffer,
        semantic_prompt=np.arange(40),
        coarse_prompt=np.zeros((3, 60), int),
        fine_prompt=np.zeros((8, 60), int),
    )
    r = client.post(
        "/voices",
        data={"id": "bad"},
        files={"file": ("x.npz", buffer.getvalue(), "application/octet-stream")},
    )
    assert r.status_code == 422 and r.json()["error"]["param"] == "coarse_prompt"


def test_builtin_voice_cannot_be_deleted(client):
    r = client.delete("/voices/v2/en_speaker_0")
    assert r.status_code == 409


def test_readyz_and_metrics(client):
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["demo"] is True
    assert len(ready["workers"]) == 2
    assert {w["device"] for w in ready["workers"]} == {"cpu"}
    client.post("/synthesize", json={"text": "Count me.", "format": "pcm"})
    text = client.get("/metrics").text
    for name in (
        "bark_queue_waiting",
        'bark_jobs_total{outcome="done"}',
        'bark_stage_seconds_bucket{le="0.01",stage="semantic"}',
        "bark_real_time_factor_count",
        "bark_time_to_first_audio_seconds_count",
        "bark_workers_live 2.0",
    ):
        assert name in text, name


def test_client_that_gives_up_cancels_its_job(api, client, workers):
    very_long = LONG * 8  # ~24 chunks: many seconds of work
    assert len(very_long) <= 4096
    with (
        httpx.Client(base_url=api.url, timeout=1.5) as impatient,
        pytest.raises(httpx.TimeoutException),
    ):
        impatient.post("/synthesize", json={"text": very_long})
    gave_up = time.monotonic()
    # the API saw the disconnect and raised the job's cancel flag; the worker dropped it
    workers.wait_idle(timeout=10)
    assert time.monotonic() - gave_up < 3
