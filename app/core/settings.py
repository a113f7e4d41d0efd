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

Device = Literal["cpu", "cuda", "auto"]
Dtype = Literal["float32", "float16", "bfloat16", "int8", "auto"]
CsvList = Annotated[list[str], NoDecode]
WORKER_STOP_MARGIN_S = 15.0
# What the example secrets in deploy/ hold: a key containing it is refused at start, so an
# example copied unedited never serves with a guessable key.
PLACEHOLDER_KEY = "replace-me"


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
