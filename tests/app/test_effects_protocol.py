"""The request models pass on what the caller sent, and only that (fast: no server).

`generation_params()` is what every synthesis route hands to the queue: each knob must come
out under its own name and value, and nothing that is not a knob may leak in."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.api.audio import FORMATS
from app.api.protocol import (
    MAX_TEXT_CHARS,
    SpeechRequest,
    SynthesizeRequest,
    audio_content,
    error_responses,
)
from bark_core.params import GREEDY_BELOW, GenerationParams

KNOBS = {
    "text_temp": 0.3,
    "waveform_temp": 0.4,
    "fine_temp": 0.6,
    "top_k": 7,
    "top_p": 0.8,
    "min_eos_p": 0.05,
    "max_duration_s": 1.5,
    "continuity": "rolling",
}


def test_generation_params_carry_every_knob_and_nothing_else():
    extra = {"voice": "v2/en_speaker_1", "seed": 9, "format": "mp3", "stream": False}
    body = SynthesizeRequest(text=" Hi. ", **extra, **KNOBS)
    assert body.generation_params() == KNOBS
    assert GenerationParams(**body.generation_params()) == GenerationParams(**KNOBS)  # type: ignore[arg-type]


def test_defaults_are_bark_cores():
    defaults = GenerationParams()
    params = SynthesizeRequest(text="x").generation_params()
    assert params == {name: getattr(defaults, name) for name in KNOBS}


@pytest.mark.parametrize(
    ("given", "kept"), [(GREEDY_BELOW / 2, 0.0), (0.0, 0.0), (GREEDY_BELOW, GREEDY_BELOW), (0.7, 0.7)]
)
def test_tiny_temperatures_mean_greedy(given, kept):
    body = SynthesizeRequest(text="x", text_temp=given, waveform_temp=given, fine_temp=given)
    assert (body.text_temp, body.waveform_temp, body.fine_temp) == (kept, kept, kept)


@pytest.mark.parametrize(
    ("text", "kept"),
    [(" a ", "a"), ("\u3000a b\n", "a b"), ("x" * MAX_TEXT_CHARS, "x" * MAX_TEXT_CHARS)],
)
def test_text_is_stripped(text, kept):
    assert SynthesizeRequest(text=text).text == kept
    assert SpeechRequest(model="tts-1", voice="alloy", input=text).input == kept


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "must not be empty or whitespace only"),
        (" \t\n", "must not be empty or whitespace only"),
        (
            "x" * (MAX_TEXT_CHARS + 1),
            f"must be at most {MAX_TEXT_CHARS} characters, got {MAX_TEXT_CHARS + 1}",
        ),
        ("a \ud800 b", "must be valid Unicode (a lone surrogate such as \\ud800 is not)"),
        ("\u200b\u0007\u200d", "must hold something speakable, not only control or zero-width characters"),
    ],
)
def test_bad_text_is_refused_saying_why(text, why):
    """The message reaches the client as the 422's error.message, word for word: it must say
    what is wrong."""
    with pytest.raises(ValidationError) as synth:
        SynthesizeRequest(text=text)
    with pytest.raises(ValidationError) as speech:
        SpeechRequest(model="tts-1", voice="alloy", input=text)
    assert (
        synth.value.errors()[0]["loc"] == ("text",)
        and synth.value.errors()[0]["msg"] == f"Value error, {why}"
    )
    assert (
        speech.value.errors()[0]["loc"] == ("input",)
        and speech.value.errors()[0]["msg"] == f"Value error, {why}"
    )


def test_error_responses_name_each_code_with_its_reason():
    responses = error_responses(404, 422, _404="Unknown voice")
    assert set(responses) == {404, 422}
    assert responses[404]["description"] == "Unknown voice"
    assert responses[422]["description"] == "Invalid request"


def test_audio_content_lists_every_format_and_the_extras():
    content = audio_content("text/event-stream")
    assert set(content) == {info.media_type for info in FORMATS.values()} | {"text/event-stream"}
    assert {"audio/wav", "audio/mpeg", "audio/flac"} <= set(content)
    assert content["audio/wav"] == {"schema": {"type": "string", "format": "binary"}}
