"""Who submitted a job (a key id, never the key), that key's limit, and metrics by key.

A key id is the first 12 hex digits of the key's sha256: enough to tell keys apart in Redis,
metrics and logs, useless for recovering the key. Without API keys every request is the one
anonymous owner "".
"""

from __future__ import annotations

import hashlib
import weakref

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import HTTPConnection

from ..core.settings import Settings
from .deps import presented_key

KEY_ID_HEX = 12


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:KEY_ID_HEX]


def owner_of(conn: HTTPConnection, settings: Settings) -> str:
    """The key id of an authorized request ("" when the service has no keys)."""
    if not settings.api_keys:
        return ""
    key = presented_key(conn)
    return key_id(key) if key else ""


def limit_for(owner: str, settings: Settings) -> int:
    """Most unfinished jobs `owner` may have (0: none beyond the queue's own bound)."""
    return settings.key_limits.get(owner, settings.jobs_per_key)


def label_of(owner: str, settings: Settings) -> str:
    return settings.key_labels.get(owner, owner or "anonymous")


_COUNTERS: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def count_submission(registry: CollectorRegistry, label: str, outcome: str) -> None:
    """bark_key_jobs_total{key, outcome}: admitted, duplicate, or rejected_<error type>."""
    counter = _COUNTERS.get(registry)
    if counter is None:
        counter = Counter(
            "bark_key_jobs",
            "Job submissions by API key id and outcome",
            ["key", "outcome"],
            registry=registry,
        )
        _COUNTERS[registry] = counter
    counter.labels(label, outcome).inc()
