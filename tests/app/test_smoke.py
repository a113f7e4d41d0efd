import io

import soundfile as sf


def test_synthesize_wav(client):
    r = client.post("/synthesize", json={"text": "Hello there.", "seed": 3})
    assert r.status_code == 200, r.text
    audio, sr = sf.read(io.BytesIO(r.content))
    assert sr == 24000 and len(audio) > 0
