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
    owner: str = ""  # the submitting API key's id (app/api/fair_share.py); "" without keys

    def to_fields(self) -> dict[str, str]:
        # `owner` again as its own field: the worker's take script (consumer.py) reads it
        # without decoding JSON
        return {"job": _dumps({"v": WIRE_VERSION, **asdict(self)}), "owner": self.owner}

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
class CheckReport:
    """One check on one attempt at a chunk (bark_core.quality.CheckResult, as sent)."""

    attempt: int
    kind: str
    passed: bool
    score: float
    threshold: float


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
    attempts: int = 1  # generations of this chunk (1: no retry; issue 16)
    checks: tuple[CheckReport, ...] = ()  # every attempt's checks (empty: checks off)
    sent_attempt: int = 0  # the attempt whose audio this is
    all_failed: bool = False  # every attempt failed a check: the best one was sent
    trimmed_s: float = 0.0  # non-speech trimmed from its ends, seconds


@dataclass(frozen=True)
class Done:
    duration_s: float = 0.0
    samples: int = 0
    chunks: int = 0
    gen_seconds: float = 0.0
    rtf: float | None = None  # generation seconds per second of audio
    worker: str = ""
    attempt: int = 1
    retried_chunks: int = 0  # chunks generated more than once (issue 16)
    failed_chunks: int = 0  # chunks whose every attempt failed a check
    trimmed_s: float = 0.0


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
        meta["checks"] = tuple(_known(CheckReport, c) for c in meta.get("checks", ()))
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
    checks: dict[str, str] = field(default_factory=dict)  # chunk check kind -> "on" or why off

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


# --- a job's status record (issue 17) ---------------------------------------------------------

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"done", "failed", "cancelled"})
_CHUNK_FIELD = "chunk:"  # one hash field per written chunk: chunk:{seq} -> its samples


@dataclass(frozen=True)
class JobRecord:
    """A job's status, the hash {p}:job:{id}:meta. The API writes it whole at submission (in
    the same script as the XADD); workers then update only their fields (`started`, `chunk`,
    `finished` below name them), so neither side overwrites the other's.

    `owner` is the submitting key's id (a hash, never the key); `attended` jobs (a client
    reads them, /synthesize or websockets, on a server with a resume grace period) are
    cancelled by their worker once nobody has renewed their lease for that period; `ttl_s`
    is how long the result is kept after the job ends."""

    id: str
    job: str  # the Job as it was queued (Job.to_fields()["job"]): what a resumed reader needs
    owner: str = ""
    created_at: float = 0.0
    ttl_s: int = 300
    attended: bool = False
    active_key: str = ""  # the owner's set of unfinished jobs (keys.owner_active), or ""
    webhook_url: str = ""
    state: JobState = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    attempt: int = 0
    worker: str = ""
    chunks_done: int = 0
    n_chunks: int | None = None
    chunk_samples: tuple[int, ...] = ()  # samples of chunk 0, 1, ... as written so far
    error_type: str = ""
    error_message: str = ""

    def to_hash(self) -> dict[str, str]:
        values = asdict(self)
        values.pop("chunk_samples")
        out = {k: _field_str(v) for k, v in values.items() if v is not None}
        out.update({f"{_CHUNK_FIELD}{i}": str(n) for i, n in enumerate(self.chunk_samples)})
        return out

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> JobRecord:
        values: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        chunks = {
            int(k[len(_CHUNK_FIELD) :]): int(v) for k, v in values.items() if k.startswith(_CHUNK_FIELD)
        }
        typed: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in values:
                typed[f.name] = _parse_field(f.name, values[f.name])
        prefix = 0
        while prefix in chunks:  # chunks are written in order: the contiguous run from 0
            prefix += 1
        typed["chunk_samples"] = tuple(chunks[i] for i in range(prefix))
        return _known(cls, typed)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def parsed_job(self) -> Job:
        return Job.from_fields({b"job": self.job.encode()})

    @staticmethod
    def started(worker: str, attempt: int, at: float) -> dict[str, str]:
        """The fields a worker sets when it takes the job."""
        return {"state": "running", "worker": worker, "attempt": str(attempt), "started_at": repr(at)}

    @staticmethod
    def chunk_written(seq: int, samples: int, n_chunks: int) -> dict[str, str]:
        """The fields a worker sets with each chunk (chunks_done only ever grows: see consumer)."""
        return {"n_chunks": str(n_chunks), f"{_CHUNK_FIELD}{seq}": str(samples)}

    @staticmethod
    def finished(event: Done | Failed, at: float) -> dict[str, str]:
        """The fields a worker sets with the job's terminal event."""
        if isinstance(event, Done):
            return {"state": "done", "finished_at": repr(at), "error_type": "", "error_message": ""}
        state = "cancelled" if event.type == "cancelled" else "failed"
        return {
            "state": state,
            "finished_at": repr(at),
            "error_type": event.type,
            "error_message": event.message,
        }


_INTS = {"ttl_s", "attempt", "chunks_done", "n_chunks"}
_FLOATS = {"created_at", "started_at", "finished_at"}


def _field_str(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _parse_field(name: str, value: str) -> Any:
    if name in _INTS:
        return int(value)
    if name in _FLOATS:
        return float(value)
    if name == "attended":
        return value == "1"
    return value


# --- a chunk's generation, kept for resuming (issue 17) ---------------------------------------

TOKEN_DTYPE = "<i2"  # token ids as little-endian int16: semantic < 10_000, codebooks < 1024


@dataclass(frozen=True)
class ChunkGeneration:
    """One written chunk's full generation, kept in {p}:job:{id}:gen beside the job's output
    for as long as it, so a reclaimed job can continue from the chunks its client already has
    (`rolling` needs chunk k-1's generation, `anchor` chunk 0's) instead of re-running them.

    Raw TOKEN_DTYPE bytes, row-major: semantic (T_sem,), coarse (2, T), fine (8, T)."""

    seq: int
    semantic: bytes
    coarse: bytes
    fine: bytes

    _PARTS = ("semantic", "coarse", "fine")

    def to_fields(self) -> dict[str, bytes]:
        return {f"{self.seq}:{part}": getattr(self, part) for part in self._PARTS}

    @classmethod
    def all_from_hash(cls, raw: dict[bytes, bytes]) -> dict[int, ChunkGeneration]:
        parts: dict[int, dict[str, bytes]] = {}
        for key, value in raw.items():
            seq, _, part = key.decode().partition(":")
            if part in cls._PARTS:
                parts.setdefault(int(seq), {})[part] = value
        return {seq: cls(seq, **got) for seq, got in sorted(parts.items()) if len(got) == len(cls._PARTS)}
