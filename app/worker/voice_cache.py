"""Voice presets for the worker: a small local LRU in front of Redis.

Uploaded presets are read from Redis and pinned by etag (the job names the version it was
submitted with). Built-in presets come from the checkpoint and are cached into Redis on first
use, so every worker reads one validated copy.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import redis

from bark_core.errors import UnknownVoiceError
from bark_core.voices import VoiceLibrary, VoicePreset

from ..queue import voice_store
from ..queue.keys import Keys
from ..queue.wire import BUILTIN_ETAG

log = logging.getLogger(__name__)


class VoiceCache:
    def __init__(
        self, client: redis.Redis, keys: Keys, library: VoiceLibrary, model: str, size: int = 32
    ) -> None:
        self.redis = client
        self.keys = keys
        self.library = library
        self.model = model
        self.size = size
        self._lru: OrderedDict[tuple[str, str], VoicePreset] = OrderedDict()

    def get(self, voice_id: str, etag: str | None) -> VoicePreset:
        key = (voice_id, etag or "")
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        preset = self._builtin(voice_id) if etag == BUILTIN_ETAG else self._uploaded(voice_id, etag)
        self._lru[key] = preset
        if len(self._lru) > self.size:
            self._lru.popitem(last=False)
        return preset

    def _builtin(self, voice_id: str) -> VoicePreset:
        redis_key = self.keys.builtin_voice(self.model, voice_id)
        fields: dict[bytes, bytes] = self.redis.hgetall(redis_key)  # type: ignore[assignment]
        if fields:
            return voice_store.decode(fields)
        preset = self.library.get(voice_id)  # UnknownVoiceError when the model lacks it
        self.redis.hset(redis_key, mapping=voice_store.encode(preset, "builtin"))  # type: ignore[arg-type]
        log.info("cached built-in preset %s in redis", voice_id)
        return preset

    def _uploaded(self, voice_id: str, etag: str | None) -> VoicePreset:
        fields: dict[bytes, bytes] = self.redis.hgetall(self.keys.voice(voice_id))  # type: ignore[assignment]
        if not fields or (etag and voice_store.etag_of(fields) != etag):
            raise UnknownVoiceError(f"voice {voice_id!r} was deleted or replaced")
        return voice_store.decode(fields)
