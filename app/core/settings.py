"""Every knob of the service, in one pydantic-settings class (environment prefix `BARK_`).

Read once at start-up (`Settings()`), validated there, and passed down explicitly: no module
reads the environment at import time. Each field's description is the operator's
documentation (the README's settings table is generated from it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bark_core.constants import ROWS_PER_REQUEST
from bark_core.params import DEFAULT_CHUNK_PAUSE_S, MAX_CHUNK_PAUSE_S
from bark_core.planner import DEFAULT_FIRST_CHUNK_S, DEFAULT_TARGET_S, MIN_TARGET_S
from bark_core.quality import CheckKind, QualityThresholds

Device = Literal["cpu", "cuda", "auto"]
Dtype = Literal["float32", "float16", "bfloat16", "int8", "auto"]
PackMode = Literal["on", "off", "auto"]  # bark_core.modules.PackMode (which imports torch)
CsvList = Annotated[list[str], NoDecode]
_QT = QualityThresholds()  # the chunk checks' defaults live in bark_core.quality
WORKER_STOP_MARGIN_S = 15.0
# What the example secrets in deploy/ hold: a key containing it is refused at start, so an
# example copied unedited never serves with a guessable key.
PLACEHOLDER_KEY = "replace-me"
MIN_RESUME_GRACE_S = 1.0  # issue 17: see Settings._check_jobs


def _split_csv(value: object) -> object:
    """`a,b , c` -> ["a", "b", "c"]: lists in env vars are comma-separated, not JSON."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BARK_", extra="ignore", frozen=True)

    # --- where things are ---------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://, rediss:// or unix://). Unset: `bark-serve` starts an "
        "embedded Redis server and local workers; set: it runs only the API.",
    )
    redis_prefix: str = Field(
        "bark",
        pattern=r"^[A-Za-z0-9_\-]{1,32}$",
        description="Prefix of every Redis key, so several deployments can share one Redis.",
    )
    redis_timeout_s: float = Field(
        3.0, gt=0, le=60, description="Socket connect/read timeout towards Redis, seconds."
    )
    data_dir: Path = Field(
        Path.home() / ".cache" / "bark-serve",
        description="Where the embedded Redis keeps its append-only file.",
    )

    # --- the model (workers) ------------------------------------------------------------
    model: str | None = Field(
        None,
        description="Hub id or local checkpoint directory. Unset: suno/bark-small when the hub "
        "is reachable, else the built-in tiny random checkpoint (noise; a demo only).",
    )
    revision: str | None = Field(None, description="Hub revision (commit) to pin.")
    device: Device = Field("auto", description="Torch device of the workers; auto picks cuda if present.")
    dtype: Dtype = Field(
        "auto",
        description="Weights/compute precision of the workers: float32, bfloat16 or int8 (dynamic "
        "int8 linears) on CPU; float16, bfloat16 or float32 on CUDA; auto: bfloat16 on GPUs that "
        "have it (sm80+), float16 on older ones, bfloat16 on CPUs with native bf16, else float32.",
    )
    offload: bool = Field(False, description="CUDA only: keep idle stages on the CPU.")
    cuda_graphs: bool = Field(
        True,
        description="CUDA only: decode steps on static-shape caches, each replayed as a CUDA graph "
        "(one launch for a step's kernels).",
    )
    cudnn_sdpa: bool = Field(
        False,
        description="CUDA only: let PyTorch pick cuDNN attention (off: its plan cache is keyed on "
        "exact shapes).",
    )
    workers: int = Field(
        1, ge=0, le=64, description="Worker processes `bark-serve` starts with an embedded Redis."
    )
    batch_size: int = Field(
        4,
        ge=1,
        le=64,
        description="Most jobs a worker runs as one batch (jobs arriving meanwhile join it).",
    )
    max_duration_s: float | None = Field(
        None,
        gt=0,
        le=60,
        description="Server-side cap on the audio of one text chunk, seconds (requests may "
        "ask for less). Unset: Bark's own limit (~15 s).",
    )
    torch_threads: int | None = Field(
        None, ge=1, le=256, description="Intra-op threads per worker (unset: torch's default)."
    )
    default_voice: str | None = Field(
        None, description="Preset used when a request names no voice (unset: no history prompt)."
    )
    cpu_packing: PackMode = Field(
        "auto",
        description="CPU float32 only: oneDNN-packed linear weights. auto: timed against plain ones "
        "at load, on this CPU, and packed only where faster (logged with the figures); on; off.",
    )

    # --- long text (workers) --------------------------------------------------------------
    rows_per_request: int = Field(
        ROWS_PER_REQUEST,
        ge=1,
        le=64,
        description="Most text chunks of one request generated at once as batch rows, where they "
        "do not depend on each other (fixed, anchor after chunk 0). 1: one chunk at a time.",
    )
    chunk_target_s: float = Field(
        DEFAULT_TARGET_S,
        ge=MIN_TARGET_S,
        le=14.0,
        description="Longest estimated spoken duration of one text chunk, seconds (Bark's window "
        "holds about 13 s).",
    )
    first_chunk_s: float = Field(
        DEFAULT_FIRST_CHUNK_S,
        ge=0.0,
        le=14.0,
        description="Longest estimated duration of a request's first chunk, so audio starts early; "
        "0 turns the short first chunk off.",
    )
    chunk_pause_s: float = Field(
        DEFAULT_CHUNK_PAUSE_S,
        ge=0.0,
        le=MAX_CHUNK_PAUSE_S,
        description="Silence between a request's text chunks, seconds.",
    )

    # --- HTTP ---------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="API bind address.")
    port: int = Field(8000, ge=0, le=65535, description="API port.")
    api_keys: CsvList = Field(
        default_factory=list,
        description="Comma-separated API keys. Empty: no authentication. Checked on every "
        "route but /healthz and /readyz (Bearer token, X-API-Key header or ?api_key=).",
    )
    cors_origins: CsvList = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS ('*' for any)."
    )
    ws_origins: CsvList = Field(
        default_factory=list,
        description="Comma-separated Origins allowed to open the websocket. Empty: clients "
        "without an Origin header and same-origin pages only; '*' for any.",
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest JSON request body, bytes (413 above)."
    )
    max_upload_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, description="Largest voice-preset upload body, bytes."
    )
    max_ws_message_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest websocket message, bytes (close 1009 above)."
    )
    static_dir: Path = Field(
        Path(__file__).resolve().parents[1] / "static",
        description="Directory of the playground page served at GET /.",
    )

    # --- queue --------------------------------------------------------------------------
    queue_max: int = Field(
        64, ge=1, description="Jobs waiting (not yet started) above which submission gets 429."
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After seconds sent with 429/503.")
    max_deliveries: int = Field(
        3, ge=1, le=100, description="Deliveries of one job (worker crashes) before dead-letter."
    )
    job_ttl_s: int = Field(300, ge=1, description="Seconds a finished job's output stream is kept in Redis.")
    request_timeout_s: float = Field(
        600.0, gt=0, description="Deadline of one synthesis from submission, seconds (504)."
    )
    heartbeat_interval_s: float = Field(
        2.0, gt=0, description="How often a worker refreshes its heartbeat and its jobs' claims."
    )
    heartbeat_ttl_s: float = Field(
        10.0, gt=0, description="A worker whose heartbeat is older is considered dead."
    )
    claim_idle_s: float = Field(
        30.0, gt=0, description="A job unclaimed for this long is taken over by another worker."
    )
    worker_id: str | None = Field(None, description="Worker id (default host-pid-random).")
    drain_timeout_s: float | None = Field(
        None,
        gt=0,
        description="On SIGTERM the API answers 503 to /readyz and to new syntheses, and waits "
        "this long for those in flight (streams and websockets included) before it stops. "
        "Unset: request_timeout_s, the longest a synthesis may run.",
    )

    # --- testing ------------------------------------------------------------------------
    fault_injection: bool = Field(
        False,
        description="TESTS ONLY. Lets workers honour fault markers in job text (e.g. crash on "
        "every delivery). Off, no request can trigger a fault.",
    )

    # --- logs ---------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of all processes."
    )
    log_json: bool = Field(True, description="One JSON object per log line (false: plain text).")

    _split = field_validator("api_keys", "cors_origins", "ws_origins", mode="before")(_split_csv)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def api_drain_s(self) -> float:
        """How long the API waits for in-flight syntheses on SIGTERM."""
        return self.drain_timeout_s if self.drain_timeout_s is not None else self.request_timeout_s

    @property
    def worker_drain_s(self) -> float:
        """How long a stopping worker may take: its job in hand runs at most until its
        deadline (request_timeout_s after submission); the margin covers the last writes."""
        return self.request_timeout_s + WORKER_STOP_MARGIN_S

    @model_validator(mode="after")
    def _check(self) -> Settings:
        # A job's claim must be refreshed several times per idle window, or live jobs get stolen.
        if self.heartbeat_interval_s * 2 >= self.claim_idle_s:
            raise ValueError("claim_idle_s must exceed 2 * heartbeat_interval_s")
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must exceed heartbeat_interval_s")
        if any(not key for key in self.api_keys):
            raise ValueError("api_keys must not contain empty keys")
        if any(PLACEHOLDER_KEY in key.lower() for key in self.api_keys):
            raise ValueError(
                f"api_keys holds the example placeholder ({PLACEHOLDER_KEY!r}): set real, random keys"
            )
        return self

    # --- security (issue 18) ----------------------------------------------------------------
    admin_keys: CsvList = Field(
        default_factory=list,
        description="Comma-separated admin keys: accepted wherever an API key is, and may "
        "overwrite or delete any uploaded voice (other keys only their own).",
    )
    allowed_hosts: CsvList = Field(
        default_factory=list,
        description="Host header names the API answers (port ignored; '*' for any; /healthz "
        "and /readyz answer any). Empty: loopback names only when no keys are set (DNS "
        "rebinding), any host when keys are set. Behind a proxy: the names clients use.",
    )
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request head (request line and all headers), bytes (400 above).",
    )
    max_header_count: int = Field(100, ge=8, le=10_000, description="Most request headers (431 above).")
    header_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a connection may take to send a whole request head."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Seconds a request may take to send its body (408)."
    )
    keep_alive_s: float = Field(5.0, gt=0, description="Seconds an idle keep-alive connection is kept open.")
    max_connections: int = Field(
        512, ge=1, description="Open HTTP connections above which new ones are closed at once."
    )
    max_request_audio_s: float = Field(
        300.0,
        gt=0,
        description="Most audio seconds one request may produce, as estimated from its text, "
        "max_duration_s and speed (422 above).",
    )
    voice_max_per_key: int = Field(50, ge=0, description="Uploaded presets one API key may hold.")
    voice_max_bytes_per_key: int = Field(
        4 * 1024 * 1024, ge=0, description="Stored bytes of the presets one API key may hold."
    )
    voice_max_total: int = Field(1000, ge=0, description="Uploaded presets in all.")
    voice_max_total_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Stored bytes of all uploaded presets."
    )
    redis_maxmemory_mb: int = Field(
        1024,
        ge=64,
        description="maxmemory of the embedded Redis, MiB, with noeviction (writes fail, the "
        "queue is never evicted). Must exceed the voice storage bound twice over.",
    )

    _split_security = field_validator("admin_keys", "allowed_hosts", mode="before")(_split_csv)

    @property
    def all_keys(self) -> list[str]:
        """Every key that authenticates: the API keys and the admin keys."""
        return [*self.api_keys, *self.admin_keys]

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.voice_max_total_bytes * 2 > self.redis_maxmemory_mb * 1024 * 1024:
            raise ValueError("redis_maxmemory_mb must be at least twice voice_max_total_bytes")
        if any(not key for key in self.admin_keys):
            raise ValueError("admin_keys must not contain empty keys")
        if any(PLACEHOLDER_KEY in key.lower() for key in self.admin_keys):
            raise ValueError(f"admin_keys holds the example placeholder ({PLACEHOLDER_KEY!r})")
        return self

    # --- jobs (issue 17) ----------------------------------------------------------------
    resume_grace_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="How long a job whose client dropped (a stream or websocket) keeps running "
        "for a resume (GET /jobs/{id}/audio?from_chunk=N, websocket `resume`) before it is "
        "cancelled. 0: a dropped client cancels its job at once. POST /jobs jobs never need it.",
    )
    jobs_per_key: int = Field(
        0,
        ge=0,
        description="Most jobs one API key may have queued or running (429 with Retry-After "
        "above, for that key only). 0: no per-key limit (queue_max still holds).",
    )
    jobs_per_key_overrides: CsvList = Field(
        default_factory=list,
        description="Per-key limits, comma-separated `KEY_ID=N` (KEY_ID: the first 12 hex "
        "digits of the key's sha256, `printf %s KEY | sha256sum | cut -c1-12`).",
    )
    key_names: CsvList = Field(
        default_factory=list,
        description="Names for API keys in metrics and logs, comma-separated `KEY_ID=name`; "
        "unnamed keys appear as their KEY_ID (never as the key).",
    )
    webhook_hosts: CsvList = Field(
        default_factory=list,
        description="Hosts a job's webhook_url may name (exact host names). Empty: webhooks off "
        "(a webhook_url is a 422), so the service cannot be pointed at internal hosts.",
    )
    webhook_secret: str = Field(
        "",
        description="HMAC-SHA256 key signing webhook bodies (header X-Bark-Signature: "
        "sha256=<hex>). Required when webhook_hosts is set.",
    )
    webhook_attempts: int = Field(
        4, ge=1, le=20, description="Deliveries of one webhook before it is given up."
    )
    webhook_backoff_s: float = Field(
        1.0, gt=0, le=300, description="First retry delay of a webhook, seconds (doubles each retry)."
    )

    # --- chunk checks (issue 16)
    quality_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Attempts at each chunk: one that fails a check is generated again with a seed "
        "derived from (seed, chunk, attempt), and the best-scoring attempt is sent if all fail. "
        "1: checks off. 3 bounds a chunk at three times its cost (a semantic failure costs "
        "only its semantic stage again).",
    )
    quality_skip: CsvList = Field(
        default_factory=list,
        description="Checks not run, comma-separated: run_on, truncated, loop, no_speech, late_end, asr.",
    )
    quality_trim_margin_s: float = Field(
        _QT.trim_margin_s or 0.0,
        ge=0,
        le=5,
        description="Leading and trailing non-speech (VAD) is trimmed to this margin, seconds.",
    )
    quality_asr_model: str = Field(
        "",
        description="Whisper model (hub id or directory) for the ASR check; empty: no ASR check. "
        "Where it cannot be loaded the worker says so once and runs without it.",
    )
    quality_asr_device: str = Field("cpu", description="Device of the ASR model: cpu or cuda.")
    quality_asr_language: str = Field("", description="Language Whisper transcribes in; empty: detected.")
    quality_max_length_ratio: float = Field(
        _QT.max_length_ratio, gt=1, description="run_on: semantic tokens over the estimate's above this fail."
    )
    quality_min_length_ratio: float = Field(
        _QT.min_length_ratio, gt=0, lt=1, description="truncated: tokens over the estimate's below this fail."
    )
    quality_length_slack_s: float = Field(
        _QT.length_slack_s, ge=0, description="run_on/truncated: a difference under this never fails, s."
    )
    quality_loop_max_s: float = Field(
        _QT.loop_max_s, ge=0, description="loop: one n-gram repeated back to back longer than this fails, s."
    )
    quality_min_speech_s: float = Field(
        _QT.min_speech_s, ge=0, description="no_speech: a text with words needs this much speech, s."
    )
    quality_max_trailing_s: float = Field(
        _QT.max_trailing_s,
        ge=0,
        description="late_end: non-speech after the last speech over this fails, s.",
    )
    quality_max_error_rate: float = Field(
        _QT.max_error_rate, gt=0, description="asr: word (or character) error rate above this fails."
    )
    quality_on_random_weights: bool = Field(
        False,
        description="Run every check even on a random-weight checkpoint (whose noise fails "
        "run_on, no_speech and asr): for tests of the retry path only.",
    )
    _split_quality = field_validator("quality_skip", mode="before")(_split_csv)

    _split_jobs = field_validator("jobs_per_key_overrides", "key_names", "webhook_hosts", mode="before")(
        _split_csv
    )

    def _pairs(self, items: list[str], name: str) -> dict[str, str]:
        out = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(f"{name}: {item!r} is not KEY_ID=value")
            out[key.strip()] = value.strip()
        return out

    @property
    def key_limits(self) -> dict[str, int]:
        return {
            k: int(v) for k, v in self._pairs(self.jobs_per_key_overrides, "jobs_per_key_overrides").items()
        }

    @property
    def key_labels(self) -> dict[str, str]:
        return self._pairs(self.key_names, "key_names")

    @property
    def quality_thresholds(self) -> QualityThresholds:
        """The chunk checks' thresholds (bark_core.quality), from the quality_* settings."""
        return QualityThresholds(
            max_length_ratio=self.quality_max_length_ratio,
            min_length_ratio=self.quality_min_length_ratio,
            length_slack_s=self.quality_length_slack_s,
            loop_max_s=self.quality_loop_max_s,
            min_speech_s=self.quality_min_speech_s,
            max_trailing_s=self.quality_max_trailing_s,
            trim_margin_s=self.quality_trim_margin_s,
            max_error_rate=self.quality_max_error_rate,
            skip=frozenset(CheckKind(k) for k in self.quality_skip),
        )

    @model_validator(mode="after")
    def _check_jobs(self) -> Settings:
        if any(not v.lstrip("-").isdigit() for v in self._pairs(self.jobs_per_key_overrides, "x").values()):
            raise ValueError("jobs_per_key_overrides: each limit must be an integer")
        self._pairs(self.key_names, "key_names")
        if 0 < self.resume_grace_s < MIN_RESUME_GRACE_S:
            # readers renew the lease on each of their 0.5 s reads: a shorter grace period
            # would let a live reader's job be cancelled between two renewals
            raise ValueError(f"resume_grace_s must be 0 or at least {MIN_RESUME_GRACE_S} s")
        if self.webhook_hosts and not self.webhook_secret:
            raise ValueError("webhook_hosts needs webhook_secret (webhook bodies are signed)")
        kinds = {k.value for k in CheckKind}
        if unknown := [k for k in self.quality_skip if k not in kinds]:
            raise ValueError(f"quality_skip: unknown checks {unknown}; known: {sorted(kinds)}")
        self.quality_thresholds  # noqa: B018 (validates the thresholds together)
        return self

    # --- issue 17: fair share in the worker
    fair_window: int = Field(
        32,
        ge=0,
        le=10_000,
        description="Waiting jobs a worker chooses among when it takes jobs: those of the API "
        "keys with the fewest jobs running in its batch go first (ties: the oldest). Up to this "
        "many are read ahead into a backlog all workers share. 0 or 1: first come, first served.",
    )
