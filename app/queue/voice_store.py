"""Voice presets in Redis as raw array bytes + dtype + shape (never pickle).

A preset is a Redis hash: for each of semantic_prompt / coarse_prompt / fine_prompt the
fields `<name>:dtype`, `<name>:shape` (JSON) and `<name>:data`, plus `etag` (content hash)
and `source`. Arrays are stored at the smallest integer type their values fit (codes below
1024 and 10,000 take 2 bytes, not int64's 8); decoding widens them back to int64.
Decoding re-validates through bark_core, so a hand-edited hash cannot smuggle in a bad array
either.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np

from bark_core.errors import InvalidVoiceError
from bark_core.voices import PROMPT_KEYS, VoicePreset

# Integer dtypes a stored array may declare; anything else (objects!) is refused.
_DTYPES = frozenset(
    np.dtype(f"{order}{kind}{size}").str for order in "<>" for kind in "iu" for size in (1, 2, 4, 8)
)


# Narrowest first: the first that holds an array's whole value range is the one stored.
_NARROW = tuple(np.dtype(t) for t in ("<u1", "<i1", "<u2", "<i2", "<u4", "<i4", "<i8"))


def narrowest(array: np.ndarray) -> np.ndarray:
    """The array at the smallest little-endian integer type its values fit."""
    if array.size == 0:
        return array.astype(_NARROW[0])
    low, high = int(array.min()), int(array.max())
    for dtype in _NARROW:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return array.astype(dtype)
    return array.astype("<i8")  # unreachable for int64 input; uint64 above 2**63 stays wide


def stored_bytes(fields: dict[str, bytes | str]) -> int:
    """What a preset's hash costs Redis in payload (its field names and values)."""
    return sum(len(k) + len(v) for k, v in fields.items())


def encode(preset: VoicePreset, source: str) -> dict[str, bytes | str]:
    fields: dict[str, bytes | str] = {"source": source, "created": str(time.time())}
    digest = hashlib.sha256()
    for name, array in preset.to_arrays().items():
        array = np.ascontiguousarray(narrowest(array))
        data = array.tobytes()
        digest.update(name.encode() + array.dtype.str.encode() + str(array.shape).encode())
        digest.update(data)
        fields[f"{name}:dtype"] = array.dtype.str
        fields[f"{name}:shape"] = json.dumps(list(array.shape))
        fields[f"{name}:data"] = data
    fields["etag"] = digest.hexdigest()[:32]
    return fields


def decode(fields: dict[bytes, bytes]) -> VoicePreset:
    arrays = {}
    for name in PROMPT_KEYS:
        try:
            dtype = fields[f"{name}:dtype".encode()].decode()
            shape = tuple(int(n) for n in json.loads(fields[f"{name}:shape".encode()]))
            data = fields[f"{name}:data".encode()]
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidVoiceError(f"stored preset lacks a valid {name}", param=name) from exc
        if dtype not in _DTYPES:
            raise InvalidVoiceError(f"stored preset {name} has dtype {dtype}", param=name)
        if int(np.prod(shape)) * np.dtype(dtype).itemsize != len(data):
            raise InvalidVoiceError(f"stored preset {name} size mismatch", param=name)
        arrays[name] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)
    return VoicePreset.from_arrays(arrays)


def etag_of(fields: dict[bytes, bytes]) -> str:
    return fields.get(b"etag", b"").decode()
