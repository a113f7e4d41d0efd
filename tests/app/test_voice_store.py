"""Presets in Redis are raw bytes + dtype + shape, and re-validated when read."""

import numpy as np
import pytest

from app.queue import voice_store
from bark_core.errors import InvalidVoiceError
from bark_core.voices import VoicePreset


def preset(seed: int = 0, n: int = 20) -> VoicePreset:
    rng = np.random.default_rng(seed)
    frames = int(n * 1.5)
    return VoicePreset.from_arrays(
        {
            "semantic_prompt": rng.integers(0, 10_000, n),
            "coarse_prompt": rng.integers(0, 1024, (2, frames)),
            "fine_prompt": rng.integers(0, 1024, (8, frames)),
        }
    )


def as_redis(fields):
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


def test_roundtrip_and_etag():
    p = preset()
    fields = voice_store.encode(p, "uploaded")
    back = voice_store.decode(as_redis(fields))
    for a, b in zip(p.to_arrays().values(), back.to_arrays().values(), strict=True):
        assert np.array_equal(a, b)
    assert voice_store.etag_of(as_redis(fields)) == fields["etag"]
    assert voice_store.encode(preset(1), "uploaded")["etag"] != fields["etag"]


def test_object_dtype_is_refused():
    fields = as_redis(voice_store.encode(preset(), "uploaded"))
    fields[b"semantic_prompt:dtype"] = b"|O"
    with pytest.raises(InvalidVoiceError):
        voice_store.decode(fields)


def test_size_mismatch_is_refused():
    fields = as_redis(voice_store.encode(preset(), "uploaded"))
    fields[b"fine_prompt:shape"] = b"[8, 999]"
    with pytest.raises(InvalidVoiceError):
        voice_store.decode(fields)


def test_out_of_range_values_are_refused():
    fields = as_redis(voice_store.encode(preset(), "uploaded"))
    data = np.frombuffer(fields[b"coarse_prompt:data"], dtype="<i8").copy()
    data[0] = 5000
    fields[b"coarse_prompt:data"] = data.tobytes()
    with pytest.raises(InvalidVoiceError):
        voice_store.decode(fields)
