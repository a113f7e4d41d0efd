"""The official openai SDK against /v1/audio/speech, unchanged."""

from __future__ import annotations

import io
import wave

import av
import openai
import pytest
import soundfile as sf


@pytest.fixture
def oai(api, client):  # `client` makes sure both workers are up
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_create_mp3_default(oai):
    response = oai.audio.speech.create(model="tts-1", voice="alloy", input="Hello from the SDK.")
    data = response.read()
    audio, sr = sf.read(io.BytesIO(data))
    assert sr == 24000 and len(audio) > 0
    assert response.response.headers["content-type"] == "audio/mpeg"


@pytest.mark.parametrize("fmt", ["wav", "flac", "opus"])
def test_create_formats(oai, fmt):
    data = oai.audio.speech.create(
        model="tts-1-hd", voice="nova", input="Formats.", response_format=fmt
    ).read()
    if fmt == "flac":
        # streamed: its STREAMINFO leaves the length unknown, which libsndfile cannot read
        with av.open(io.BytesIO(data)) as c:
            stream = c.streams.audio[0]
            assert stream.rate == 24000 and sum(f.samples for f in c.decode(stream)) > 0
        return
    audio, sr = sf.read(io.BytesIO(data))
    assert sr == 24000 and len(audio) > 0


def test_with_streaming_response_wav(oai, tmp_path):
    with oai.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts",
        voice="v2/en_speaker_2",
        input="Streaming. Two sentences.",
        response_format="wav",
        instructions="Speak cheerfully.",
    ) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        target = tmp_path / "speech.wav"
        response.stream_to_file(target)
    with wave.open(str(target)) as w:
        frames = w.readframes(w.getnframes())
    assert len(frames) > 0
    audio, sr = sf.read(target)
    assert sr == 24000 and len(audio) == len(frames) // 2


def test_with_streaming_response_pcm(oai):
    with oai.audio.speech.with_streaming_response.create(
        model="tts-1", voice="echo", input="Raw.", response_format="pcm"
    ) as response:
        data = b"".join(response.iter_bytes())
    assert len(data) > 0 and len(data) % 2 == 0


def test_sse_stream_format(api, client):
    import base64
    import json

    body = {
        "model": "tts-1",
        "voice": "alloy",
        "input": "Events.",
        "response_format": "pcm",
        "stream_format": "sse",
    }
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    deltas = [base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and sum(map(len, deltas)) == events[-1]["usage"]["output_tokens"] * 2


def test_sdk_errors_map_to_exceptions(oai):
    with pytest.raises(openai.UnprocessableEntityError) as info:
        oai.audio.speech.create(model="tts-1", voice="alloy", input="x", speed=5.0)
    # the SDK unwraps our {"error": {...}} body, as it does OpenAI's
    assert info.value.body["param"] == "speed" and info.value.body["code"] == 422
    with pytest.raises(openai.NotFoundError):
        oai.audio.speech.create(model="tts-1", voice="nobody", input="x")


def test_speed_is_applied(oai):
    data = oai.audio.speech.create(
        model="tts-1", voice="alloy", input="Faster.", response_format="wav", speed=2.0
    ).read()
    audio, sr = sf.read(io.BytesIO(data))
    assert sr == 24000 and len(audio) > 0
