"""What travels through Redis: a job (stream entry of {p}:jobs) and output events.

Plain JSON and raw bytes only: nothing is pickled, so a worker never unpickles what an API
(or anyone with Redis access) wrote.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

EventType = Literal["started", "chunk", "done", "error"]
TERMINAL: frozenset[str] = frozenset({"done", "error"})

SAMPLE_RATE = 24_000


@dataclass(frozen=True)
class Job:
    """One synthesis. `seed` is fixed here, at submission, so any re-run reproduces it."""

    id: str
    text: str
    voice: str | None
    voice_etag: str | None  # uploaded presets: content hash, so a worker's LRU never goes stale
    params: dict[str, Any]  # bark_core GenerationParams keyword arguments
    seed: int
    submitted_at: float  # epoch seconds
    deadline: float  # epoch seconds; the worker drops the job past it
    request_id: str = ""

    def to_fields(self) -> dict[str, str]:
        return {"job": json.dumps(asdict(self), separators=(",", ":"))}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Job:
        raw = json.loads(fields[b"job"])
        return cls(**raw)


@dataclass
class Event:
    """One entry of a job's output stream. `seq` numbers chunks 0..n-1 (-1 otherwise)."""

    type: EventType
    seq: int = -1
    meta: dict[str, Any] = field(default_factory=dict)
    pcm: bytes = b""  # s16le, 24 kHz, mono (chunk events only)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL

    def to_fields(self) -> dict[str, str | bytes]:
        return {
            "type": self.type,
            "seq": str(self.seq),
            "meta": json.dumps(self.meta, separators=(",", ":")),
            "pcm": self.pcm,
        }

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Event:
        kind = fields[b"type"].decode()
        if kind not in ("started", "chunk", "done", "error"):
            raise ValueError(f"unknown event type {kind!r}")
        return cls(
            type=kind,  # type: ignore[arg-type]
            seq=int(fields.get(b"seq", b"-1")),
            meta=json.loads(fields.get(b"meta", b"{}")),
            pcm=fields.get(b"pcm", b""),
        )

    @classmethod
    def error(cls, status: int, type_: str, message: str, param: str | None = None) -> Event:
        return cls("error", meta={"status": status, "type": type_, "message": message, "param": param})


def to_pcm16(audio: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> s16le bytes (clipped, rounded)."""
    scaled = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0
    return np.rint(scaled).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    """s16le bytes -> float32 in [-1, 1]."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0
