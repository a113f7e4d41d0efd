"""What the caller asks for reaches the model: the service's audio equals `BarkPipeline` run
here, on the same checkpoint, with the same voice, knobs and seed.

Every other service test compares the service with itself, so a request field dropped on its
way to the worker (a voice, a temperature) goes unseen there. Here each case is checked in two
ways: the service's PCM equals a local reference made with exactly the asked-for settings, and
that reference differs from the one made without the change. A service that ignored the knob
would return the second, not the first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from app.api.audio import change_tempo
from app.api.openai.voices import OPENAI_VOICES
from bark_core.audio import to_pcm16
from bark_core.constants import SAMPLE_RATE
from bark_core.params import GenerationParams
from bark_core.pipeline import BarkPipeline
from bark_core.voices import VoicePreset
from tests.support.presets import preset_npz
from tests.support.servers import FAST
from tests.support.ws import read_until_done

# The service suite's server-side cap on each text chunk (make_settings): the local reference
# must be capped alike, or it is a longer generation.
SERVER_CAP_S = float(FAST["max_duration_s"])
TEXT = "Effects reach the model."
TWO_CHUNKS = " ".join(
    f"Sentence {i} is long enough that two of them fill one text chunk of about two hundred characters."
    for i in range(4)
)
ATEMPO_SLACK_S = 0.06
VOICE_A, VOICE_B = "v2/en_speaker_1", "v2/en_speaker_2"
GREEDY: dict[str, Any] = {"text_temp": 0.0, "waveform_temp": 0.0, "fine_temp": 0.0, "min_eos_p": None}
# Sampled, as the service's defaults are, so that top_k, top_p and min_eos_p have something to cut.
BASE: dict[str, Any] = {"seed": 7, "voice": VOICE_A, "text": TEXT}
# One change each from BASE: (name, the request's extra fields)
KNOBS: dict[str, dict[str, Any]] = {
    "text_temp": {"text_temp": 0.0},
    "waveform_temp": {"waveform_temp": 0.0},
    "fine_temp": {"fine_temp": 0.0},
    "top_k": {"top_k": 2},
    "top_p": {"top_p": 0.05},
    # the random model's P(EOS) is small but not zero: a low threshold stops early
    "min_eos_p": {"min_eos_p": 1e-4},
    "max_duration_s": {"max_duration_s": 0.1},
    "continuity": {"continuity": "rolling", "text": TWO_CHUNKS},
    "seed": {"seed": 8},
}

Reference = Callable[[dict[str, Any]], bytes]


def _params(body: dict[str, Any]) -> GenerationParams:
    """The request's knobs as GenerationParams, capped as the server caps them."""
    fields = {k: v for k, v in body.items() if k in GenerationParams.__dataclass_fields__}
    asked = fields.get("max_duration_s")
    fields["max_duration_s"] = min(asked, SERVER_CAP_S) if asked else SERVER_CAP_S
    return GenerationParams(**fields)


@pytest.fixture(scope="module")
def reference(pipeline: BarkPipeline) -> Reference:
    """PCM of a /synthesize body run locally (memoised: several tests share references)."""
    cache: dict[str, bytes] = {}

    def run(body: dict[str, Any]) -> bytes:
        key = json.dumps(body, sort_keys=True, default=lambda preset: preset.to_npz_bytes().hex())
        if key not in cache:
            voice = body.get("voice")
            preset = body.get("preset") or (pipeline.voices.get(voice) if voice else None)
            audio = pipeline.synthesize(body["text"], preset, _params(body), body.get("seed", 0))
            cache[key] = to_pcm16(audio)
        return cache[key]

    return run


def _synthesize(client: httpx.Client, body: dict[str, Any]) -> bytes:
    r = client.post("/synthesize", json={**body, "format": "pcm"})
    assert r.status_code == 200, r.text
    return r.content


def _ws(ws_url: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], bytes]:
    with connect(f"{ws_url}/ws/synthesize", open_timeout=30) as ws:
        ws.send(json.dumps(body))
        return read_until_done(ws)


def _case(knob: str) -> dict[str, Any]:
    return {**BASE, **KNOBS[knob]}


# --- voices ---------------------------------------------------------------------------------


def test_voice_reaches_the_model(client, reference):
    body = {**GREEDY, "text": TEXT, "seed": 3}
    a = _synthesize(client, {**body, "voice": VOICE_A})
    b = _synthesize(client, {**body, "voice": VOICE_B})
    assert a != b, "two voices gave the same audio"
    assert a == reference({**body, "voice": VOICE_A})
    assert b == reference({**body, "voice": VOICE_B})


def test_voice_reaches_the_model_over_the_websocket(api, client, reference):
    body = {**GREEDY, "text": TEXT, "seed": 3, "voice": VOICE_B}
    _, pcm = _ws(api.ws_url, body)
    assert pcm == reference(body) and pcm != reference({**body, "voice": VOICE_A})


# --- knobs ------------------------------------------------------------------------------------


def test_every_knob_changes_the_local_reference(reference):
    """The premise of the knob tests: each change from BASE gives other audio here."""
    base = reference(BASE)
    same = [knob for knob in KNOBS if reference(_case(knob)) == base]
    assert not same, f"no effect locally: {same}"


@pytest.mark.parametrize("knob", list(KNOBS))
def test_knob_reaches_the_model(client, reference, knob):
    assert _synthesize(client, _case(knob)) == reference(_case(knob))


def test_knobs_reach_the_model_over_the_websocket(api, client, reference):
    """Every case at once (they share batches: a row's audio does not depend on its batch)."""
    with ThreadPoolExecutor(len(KNOBS)) as pool:
        runs = list(pool.map(lambda knob: _ws(api.ws_url, _case(knob)), KNOBS))
    got = {knob: pcm for knob, (_, pcm) in zip(KNOBS, runs, strict=True)}
    wrong = [knob for knob in KNOBS if got.get(knob) != reference(_case(knob))]
    assert not wrong, f"differ from their local reference: {wrong}"


def test_duration_and_eos_shorten_as_asked(client, reference):
    """max_duration_s caps the audio; a low min_eos_p stops before the cap."""
    full = len(reference(BASE)) // 2
    capped = len(reference(_case("max_duration_s"))) // 2
    early = len(reference(_case("min_eos_p"))) // 2
    assert full <= round(SERVER_CAP_S * SAMPLE_RATE) + 2 * 320  # a frame is 320 samples
    assert 0 < capped < full and capped <= round(0.1 * SAMPLE_RATE) + 2 * 320
    assert early < full


# --- the OpenAI route ---------------------------------------------------------------------------


def _speech(client: httpx.Client, **body: Any) -> tuple[bytes, int]:
    body = {"model": "tts-1", "input": TEXT, "response_format": "pcm", **body}
    r = client.post("/v1/audio/speech", json=body)
    assert r.status_code == 200, r.text
    return r.content, int(r.headers["x-bark-seed"])


def test_openai_voice_reaches_the_model(client, reference):
    """The route samples with the defaults and a random seed, which it reports. Sampled on the
    random model, many presets give the same audio for a seed (so a wrong row of the voice table
    may pass here), but no preset never does: a voice lost on the way fails."""
    pcm, seed = _speech(client, voice="alloy")
    body = {"text": TEXT, "seed": seed}
    assert pcm == reference({**body, "voice": OPENAI_VOICES["alloy"]})
    assert pcm != reference(body)


@pytest.mark.parametrize("speed", [2.0, 0.5])
def test_openai_speed_stretches_the_audio(client, reference, speed):
    pcm, seed = _speech(client, voice="alloy", speed=speed)
    plain = reference({"text": TEXT, "seed": seed, "voice": OPENAI_VOICES["alloy"]})
    assert pcm == change_tempo(plain, speed)
    # about len/speed: atempo works on overlapping windows, and a clip this short (at most
    # 0.25 s) gains or loses up to part of one at its ends, so 60 ms of slack on top of 5%
    stretched, expected = len(pcm) / 2, len(plain) / 2 / speed
    assert stretched == pytest.approx(expected, rel=0.05, abs=ATEMPO_SLACK_S * SAMPLE_RATE)


# --- uploaded voices ----------------------------------------------------------------------------


def _upload(client: httpx.Client, voice_id: str, data: bytes, overwrite: bool = False) -> None:
    files = {"file": ("v.npz", data, "application/octet-stream")}
    r = client.post("/voices", data={"id": voice_id}, files=files, params={"overwrite": overwrite})
    assert r.status_code == 201, r.text


def test_overwritten_voice_is_used_at_once(api, client, workers, reference):
    """Both workers hold the old arrays in their LRU when the preset is replaced: the next job,
    whichever worker runs it, uses the new ones."""
    voice_id = "effects-overwrite"
    old, new = preset_npz(1), preset_npz(2)
    body = {**GREEDY, "text": TEXT, "seed": 4, "voice": voice_id}
    _upload(client, voice_id, old)
    try:
        expected_old = reference({**body, "preset": VoicePreset.from_npz_bytes(old)})
        expected_new = reference({**body, "preset": VoicePreset.from_npz_bytes(new)})
        assert expected_old != expected_new
        ran_old = _warm_every_worker(api.ws_url, body, expected_old, len(workers.alive()))
        _upload(client, voice_id, new, overwrite=True)
        events, pcm = _ws(api.ws_url, body)
        worker = next(e["worker"] for e in events if e["type"] == "started")
        assert worker in ran_old  # its LRU held the old version
        assert pcm == expected_new
    finally:
        client.delete(f"/voices/{voice_id}")


def _warm_every_worker(ws_url: str, body: dict[str, Any], expected: bytes, n: int) -> set[str]:
    """Run `body` until each of `n` workers has run it once (pairs at a time, bounded)."""
    ran: set[str] = set()
    for _ in range(4):
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: _ws(ws_url, body), range(2)))
        for events, pcm in results:
            assert pcm == expected
            ran.add(next(e["worker"] for e in events if e["type"] == "started"))
        if len(ran) >= n:
            break
    assert len(ran) >= n, f"only {ran} ran the preset"
    return ran
