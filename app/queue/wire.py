"""Everything that crosses Redis, each message a typed value with one encode and one decode.

Written by one side and read by the other through the same class:

  Job             API -> worker      an entry of the {p}:jobs stream
  Started, Chunk, worker -> API      the entries of a job's output stream {p}:job:{id}:out,
  Done, Failed                       in that order (Done or Failed is the terminal one)
  WorkerInfo      worker -> API      a worker's heartbeat {p}:worker:{id}
  BuiltinVoices   worker -> API      the served model's presets {p}:voices:builtin

Plain JSON and raw bytes only: nothing is pickled, so a worker never unpickles what an API (or
anyone with Redis access) wrote. Every message carries WIRE_VERSION; a reader ignores fields it
does not know, so an API and workers one version apart keep talking during a rolling update.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

WIRE_VERSION = 1
_T = TypeVar("_T")


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _known(cls: type[_T], values: dict[str, Any]) -> _T:
    """`cls(**values)` without the fields `cls` does not have (written by a newer version)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in names})


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
        return {"job": _dumps({"v": WIRE_VERSION, **asdict(self)})}

    @classmethod
    def from_fields(cls, entry: dict[bytes, bytes]) -> Job:
        return _known(cls, json.loads(entry[b"job"]))


# --- a job's output stream ------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """A worker took the job (again, after a crash: `attempt` counts the deliveries)."""

    worker: str = ""
    attempt: int = 1
    batch: int = 1  # jobs in the worker's batch with this one


@dataclass(frozen=True)
class Chunk:
    """The audio of one text chunk: s16le, 24 kHz, mono. `seq` numbers chunks 0..n-1."""

    seq: int
    pcm: bytes = b""
    text: str = ""
    n_chunks: int = 1
    stage_seconds: dict[str, float] = field(default_factory=dict)  # worker time per stage
    stage_batch: dict[str, int] = field(default_factory=dict)  # rows in each stage's run
    estimate_s: float | None = None  # the planner's estimate of the text's spoken duration
    duration_s: float = 0.0  # of the audio sent, the pause before it included
    pause_s: float = 0.0  # the silence that opens it (every chunk after the first)


@dataclass(frozen=True)
class Done:
    duration_s: float = 0.0
    samples: int = 0
    chunks: int = 0
    gen_seconds: float = 0.0
    rtf: float | None = None  # generation seconds per second of audio
    worker: str = ""
    attempt: int = 1


@dataclass(frozen=True)
class Failed:
    """The job's error: `type` is a ServiceError type name (app.core.errors.BY_TYPE)."""

    type: str
    message: str
    param: str | None = None
    dropped_at: float | None = None  # epoch seconds the worker stopped generating it


Event = Started | Chunk | Done | Failed
_KINDS: dict[str, type[Started | Chunk | Done | Failed]] = {
    "started": Started,
    "chunk": Chunk,
    "done": Done,
    "error": Failed,
}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}
Kind = Literal["started", "chunk", "done", "error"]


def is_terminal(event: Event) -> bool:
    return isinstance(event, Done | Failed)


def encode_event(event: Event) -> dict[str, str | bytes]:
    meta = asdict(event)
    out: dict[str, str | bytes] = {"type": _KIND_OF[type(event)], "v": str(WIRE_VERSION)}
    if isinstance(event, Chunk):
        out["seq"] = str(meta.pop("seq"))
        out["pcm"] = meta.pop("pcm")
    out["meta"] = _dumps(meta)
    return out


def decode_event(entry: dict[bytes, bytes]) -> Event:
    kind = entry[b"type"].decode()
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    meta: dict[str, Any] = json.loads(entry.get(b"meta", b"{}"))
    if cls is Chunk:
        meta["seq"] = int(entry[b"seq"])
        meta["pcm"] = entry.get(b"pcm", b"")
    return _known(cls, meta)


# --- what workers publish about themselves ----------------------------------------------------

WorkerState = Literal["loading", "idle", "busy"]


@dataclass(frozen=True)
class WorkerInfo:
    """A worker's heartbeat. `ts` is when it was written: a frozen worker's key outlives it."""

    id: str
    host: str = ""
    pid: int = 0
    state: WorkerState = "loading"
    jobs: tuple[str, ...] = ()
    jobs_done: int = 0
    started_at: float = 0.0
    ts: float = 0.0
    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    is_random_demo: bool = False
    batch_size: int | None = None

    @property
    def ready(self) -> bool:
        return self.state in ("idle", "busy")

    def to_json(self) -> str:
        return _dumps({"v": WIRE_VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerInfo:
        values = json.loads(raw)
        values["jobs"] = tuple(values.get("jobs", ()))
        return _known(cls, values)


# The version a job pins for a built-in preset (uploaded presets pin their content hash).
BUILTIN_ETAG = "builtin"


@dataclass(frozen=True)
class BuiltinVoices:
    """The served model and its presets, as the workers that loaded it published them."""

    model: str | None = None
    demo: bool = False  # the model holds random weights
    ids: frozenset[str] = frozenset()

    def to_json(self) -> str:
        return _dumps({"v": WIRE_VERSION, "model": self.model, "demo": self.demo, "ids": sorted(self.ids)})

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> BuiltinVoices:
        if raw is None:
            return cls()
        values = json.loads(raw)
        return cls(values.get("model"), bool(values.get("demo")), frozenset(values.get("ids", ())))
