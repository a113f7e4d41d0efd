"""Every Redis key the service uses, in one place.

{p}:jobs                  stream of submitted jobs; consumer group {p}:workers
{p}:dead                  stream of dead-lettered jobs (delivered too many times)
{p}:job:{id}:out          per-job output stream: started / chunk* / done|error
{p}:job:{id}:cancel       cancel flag set by the API, polled by the worker
{p}:worker:{wid}          a worker's heartbeat (JSON, with a TTL)
{p}:workers:live          sorted set of worker ids, scored by when their heartbeat expires
{p}:voice:{id}            an uploaded preset: raw array bytes + dtype + shape (a hash)
{p}:voices:uploaded       hash of uploaded preset id -> etag
{p}:voices:builtin        JSON list of the model's built-in presets, published by workers
{p}:builtin:{model}:{id}  a built-in preset cached by a worker on first use
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "bark"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def group(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    def out(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:out"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:cancel"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers_live(self) -> str:
        return f"{self.prefix}:workers:live"

    def voice(self, voice_id: str) -> str:
        return f"{self.prefix}:voice:{voice_id}"

    @property
    def uploaded_voices(self) -> str:
        return f"{self.prefix}:voices:uploaded"

    @property
    def builtin_voices(self) -> str:
        return f"{self.prefix}:voices:builtin"

    def builtin_voice(self, model: str, voice_id: str) -> str:
        # The model name is hashed: a local directory path is long and may hold ':'.
        tag = hashlib.sha1(model.encode()).hexdigest()[:12]
        return f"{self.prefix}:builtin:{tag}:{voice_id}"


# --- jobs that outlive a connection (issue 17) ------------------------------------------------
# {p}:job:{id}:meta         a job's status record (wire.JobRecord, a hash)
# {p}:job:{id}:lease        present while some client reads an attended job (PX = grace)
# {p}:job:{id}:gen          each written chunk's tokens (wire.ChunkGeneration), for resuming
# {p}:idem:{owner}:{digest} Idempotency-Key -> "job_id fingerprint", for the result TTL
# {p}:owner:{owner}:active  sorted set of an API key's unfinished jobs, scored by deadline
#
# BACKLOG is a consumer of the {p}:workers group, not a key: the jobs read from {p}:jobs but
# not yet started park there, so that a worker can choose among them (Consumer.take).

BACKLOG = "~backlog"


def record(keys: Keys, job_id: str) -> str:
    return f"{keys.prefix}:job:{job_id}:meta"


def lease(keys: Keys, job_id: str) -> str:
    return f"{keys.prefix}:job:{job_id}:lease"


def idempotency(keys: Keys, owner: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"{keys.prefix}:idem:{owner or '-'}:{digest}"


def owner_active(keys: Keys, owner: str) -> str:
    return f"{keys.prefix}:owner:{owner or '-'}:active"


def generation(keys: Keys, job_id: str) -> str:
    return f"{keys.prefix}:job:{job_id}:gen"
