"""Request and response models of the public API. Unknown fields are rejected (extra=forbid)."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from bark_core.params import GREEDY_BELOW, Continuity, GenerationParams

from .audio import FORMATS, AudioFormat

MAX_TEXT_CHARS = 4096
MAX_SEED = 2**32 - 1

# The text rule below, as a JSON Schema pattern, so the published schema says exactly what the
# validator accepts (fuzzers and clients rely on it). `_WS` is Python's str.strip() whitespace
# (str.isspace), written out: JSON Schema's own \s is a different set.
_WS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _silent_class() -> str:
    """Characters with nothing to speak: Unicode's controls (Cc: NUL...) and format characters
    (Cf: zero-width and bidi marks, BOM, soft hyphen), in the BMP (JSON Schema patterns are
    UTF-16), as a regex class body. Text must hold one character outside these and _WS."""
    silent = [c for c in range(0x10000) if unicodedata.category(chr(c)) in ("Cc", "Cf")]
    ranges: list[list[int]] = []
    for c in silent:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "".join(f"\\u{a:04x}" + (f"-\\u{b:04x}" if b > a else "") for a, b in ranges)


_SILENT = _silent_class()
TEXT_PATTERN = (
    rf"^(?=[\s\S]*[^{_WS}{_SILENT}])"
    rf"[{_WS}]*[^{_WS}](?:[\s\S]{{0,{MAX_TEXT_CHARS - 2}}}[^{_WS}])?[{_WS}]*$"
)
_SPEAKABLE = re.compile(f"[^{_WS}{_SILENT}]")
# Lone surrogates: stdlib JSON decodes "\ud800" into one; no tokenizer can encode it. (Not
# in TEXT_PATTERN: JSON Schema patterns see UTF-16 code units, where emoji are surrogates.)
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_VOICE_CHARS = 128  # preset ids are 64 at most; built-ins ('v2/en_speaker_6') shorter


class Strict(BaseModel):
    # strict: JSON true/false is not a seed or a temperature, nor 1 a boolean (lax mode would
    # coerce them and accept what the published schema rejects; schemathesis found `"seed": false`)
    model_config = ConfigDict(extra="forbid", strict=True)


def _check_text(value: str) -> str:
    """1..4096 characters after stripping surrounding whitespace, something speakable among
    them, and no lone surrogate. The one text rule of every route (HTTP, OpenAI, websocket)."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty or whitespace only")
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"must be at most {MAX_TEXT_CHARS} characters, got {len(value)}")
    if _SURROGATE.search(value):
        raise ValueError("must be valid Unicode (a lone surrogate such as \\ud800 is not)")
    if not _SPEAKABLE.search(value):
        raise ValueError("must hold something speakable, not only control or zero-width characters")
    return value


def _greedy_if_tiny(value: float) -> float:
    return 0.0 if value < GREEDY_BELOW else value


Temperature = Annotated[float, Field(ge=0.0, le=2.0), AfterValidator(_greedy_if_tiny)]
# Declared, not enforced, by the schema: _check_text enforces it (pydantic's regex engine would
# compile the bounded repeat into a large automaton for every request).
TEXT_SCHEMA: dict[str, Any] = {"minLength": 1, "pattern": TEXT_PATTERN}
_GREEDY = f"0 (or below {GREEDY_BELOW}) = greedy"
DEFAULTS = GenerationParams()


class GenerationFields(Strict):
    """Sampling knobs shared by every synthesis entry point (bark_core's GenerationParams)."""

    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Fixed seed; random if null.")
    text_temp: Temperature = Field(DEFAULTS.text_temp, description=f"Semantic stage temperature; {_GREEDY}.")
    waveform_temp: Temperature = Field(
        DEFAULTS.waveform_temp, description=f"Coarse stage temperature; {_GREEDY}."
    )
    fine_temp: Temperature = Field(DEFAULTS.fine_temp, description=f"Fine stage temperature; {_GREEDY}.")
    top_k: int | None = Field(
        DEFAULTS.top_k, ge=1, le=10_000, description="Sample from the k likeliest tokens; null = all."
    )
    top_p: float | None = Field(
        DEFAULTS.top_p, gt=0.0, le=1.0, description="Nucleus sampling: the smallest set of this mass."
    )
    min_eos_p: float | None = Field(
        DEFAULTS.min_eos_p, ge=0.0, le=1.0, description="Stop once P(EOS) >= this."
    )
    max_duration_s: float | None = Field(
        DEFAULTS.max_duration_s, gt=0.0, le=60.0, description="Cap on the audio of each text chunk, seconds."
    )
    continuity: Continuity | None = Field(
        DEFAULTS.continuity,
        description="History prompt of the text chunks: fixed (the preset for every chunk), anchor "
        "(chunk 0's generation for every later chunk), rolling (the chunk before); null: fixed with "
        "a voice, anchor without one.",
    )

    def generation_params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"seed", "text", "voice", "format", "stream"})


class SynthesizeRequest(GenerationFields):
    text: str = Field(
        ..., description="Text to speak, 1..4096 characters after strip.", json_schema_extra=TEXT_SCHEMA
    )
    voice: str | None = Field(
        None, max_length=MAX_VOICE_CHARS, description="Preset id (GET /voices); null = default."
    )
    format: AudioFormat = Field("wav", description="Audio container/codec.")
    stream: bool = Field(False, description="Chunked transfer, each text chunk encoded as it is decoded.")

    _text = field_validator("text")(_check_text)


OpenAIFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class SpeechRequest(Strict):
    """OpenAI's POST /v1/audio/speech body."""

    model: str = Field(
        ...,
        min_length=1,
        max_length=256,
        description="tts-1, tts-1-hd, gpt-4o-mini-tts, bark, ...: one model.",
    )
    input: str = Field(
        ..., description="Text, 1..4096 characters after strip.", json_schema_extra=TEXT_SCHEMA
    )
    voice: str = Field(
        ..., min_length=1, max_length=MAX_VOICE_CHARS, description="An OpenAI voice name or a preset id."
    )
    response_format: OpenAIFormat = Field("mp3", description="Audio format; always streamed.")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Pitch-preserving time stretch.")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="The audio bytes, or server-sent events with base64 deltas."
    )
    instructions: str | None = Field(
        None, max_length=MAX_TEXT_CHARS, description="Accepted and ignored: Bark cannot follow them."
    )

    _input = field_validator("input")(_check_text)


# --- websocket events (server -> client; audio goes in binary frames after `chunk`) ------


class QueuedEvent(BaseModel):
    type: Literal["queued"] = "queued"
    position: int = Field(description="Jobs ahead of this one when it was queued.")
    job_id: str
    request_id: str
    seed: int


class StartedEvent(BaseModel):
    type: Literal["started"] = "started"
    worker: str | None = None
    batch: int | None = Field(None, description="Jobs in the worker's batch with this one.")


class CheckEvent(BaseModel):
    """One chunk check on one attempt (README: Chunk checks)."""

    attempt: int
    kind: str
    passed: bool
    score: float
    threshold: float


class ChunkEvent(BaseModel):
    type: Literal["chunk"] = "chunk"
    seq: int
    samples: int
    text: str
    n_chunks: int | None = None
    estimate_s: float | None = Field(
        default=None, description="The planner's estimate of its spoken duration."
    )
    duration_s: float = Field(default=0.0, description="Its audio, seconds (the pause before it included).")
    attempts: int = Field(default=1, description="Generations of this chunk (more than 1: it was retried).")
    checks: list[CheckEvent] = Field(default_factory=list, description="Every attempt's checks.")
    all_failed: bool = Field(default=False, description="Every attempt failed a check: the best was sent.")
    trimmed_s: float = Field(default=0.0, description="Non-speech trimmed from its ends, seconds.")


class DoneEvent(BaseModel):
    type: Literal["done"] = "done"
    duration_s: float
    rtf: float | None = Field(description="Generation seconds per second of audio.")
    samples: int
    chunks: int
    retried_chunks: int = Field(default=0, description="Chunks generated more than once (chunk checks).")
    failed_chunks: int = Field(default=0, description="Chunks whose every attempt failed a check.")


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: int


class ErrorResponse(BaseModel):
    """The one error shape of every route."""

    error: ErrorBody


_ERROR_WHY = {
    400: "Malformed body (not UTF-8, broken multipart)",
    401: "Missing or invalid API key (when keys are configured)",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    422: "Invalid request",
    429: "Queue full (see Retry-After)",
    500: "Generation failed",
    503: "No live worker, queue unreachable, or shutting down (see Retry-After)",
    504: "Deadline exceeded",
}


def error_responses(*codes: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error codes, all in the one error shape."""
    reasons = {**_ERROR_WHY, **{int(k.lstrip("_")): v for k, v in why.items()}}
    return {code: {"model": ErrorResponse, "description": reasons[code]} for code in codes}


def audio_content(*extra: str) -> dict[str, dict[str, object]]:
    """OpenAPI `content` of an audio response: every format's media type."""
    types = [info.media_type for info in FORMATS.values()] + list(extra)
    return {t: {"schema": {"type": "string", "format": "binary"}} for t in types}


# Every route behind the key check and the body limit can answer these.
COMMON_ERRORS = (400, 401, 413, 422)


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorBody


# --- voices ------------------------------------------------------------------------------


class VoiceOut(BaseModel):
    id: str
    language: str | None
    language_name: str | None
    source: Literal["builtin", "uploaded"]


MAX_VOICE_PAGE = 1000


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    model: str | None = Field(description="Model the workers serve (null: no worker yet).")
    demo: bool = Field(description="True when the model is the built-in random checkpoint.")
    warning: str | None = None
    data: list[VoiceOut] = Field(description="This page of presets, by id (built-in and uploaded).")
    has_more: bool = Field(False, description="More presets follow: ask again with after=next_after.")
    next_after: str | None = Field(None, description="The `after` of the next page (null: last page).")
    by_language: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="Built-in preset ids by language code, then 'v1'/'v2' (all of them, every page).",
    )
    other: list[str] = Field(
        default_factory=list, description="Built-in presets of no language (e.g. 'announcer')."
    )
    openai_voices: dict[str, str] = Field(description="OpenAI voice name -> preset id.")
