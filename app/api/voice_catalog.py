"""The API's view of voice presets: built-ins published by workers, uploads kept in Redis."""

from __future__ import annotations

import redis.asyncio as aioredis

from bark_core.errors import InvalidVoiceError
from bark_core.voices import LANGUAGES, PROMPT_KEYS, VOICE_ID_RE, VoicePreset, language_of

from ..core.errors import Conflict, InvalidRequest, NotFound, UnknownVoice
from ..queue import voice_store
from ..queue.keys import Keys
from ..queue.wire import BUILTIN_ETAG, BuiltinVoices
from .protocol import VoiceOut


def _voice_out(voice_id: str, source: str) -> VoiceOut:
    lang = language_of(voice_id)
    return VoiceOut(
        id=voice_id,
        language=lang,
        language_name=LANGUAGES.get(lang) if lang else None,
        source=source,  # type: ignore[arg-type]
    )


class VoiceCatalog:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def builtin(self) -> BuiltinVoices:
        """What the workers published: their model, whether it is random, its presets."""
        return BuiltinVoices.from_json(await self.redis.get(self.keys.builtin_voices))

    async def uploaded(self) -> dict[str, str]:
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys.uploaded_voices)  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def list(self) -> tuple[BuiltinVoices, list[VoiceOut]]:
        builtin = await self.builtin()
        voices = [_voice_out(v, "builtin") for v in sorted(builtin.ids)]
        voices += [_voice_out(v, "uploaded") for v in sorted(await self.uploaded())]
        return builtin, voices

    async def etag(self, voice_id: str) -> str:
        """The version a job should pin for `voice_id`; UnknownVoice if there is none."""
        etag: bytes | None = await self.redis.hget(self.keys.uploaded_voices, voice_id)  # type: ignore[assignment]
        if etag is not None:
            return etag.decode()
        if voice_id in (await self.builtin()).ids:
            return BUILTIN_ETAG
        raise UnknownVoice(f"unknown voice {voice_id!r}; GET /voices lists the presets")

    async def upload(self, voice_id: str, data: bytes, *, overwrite: bool) -> VoiceOut:
        if not VOICE_ID_RE.match(voice_id):
            raise InvalidRequest(
                "voice id must be 1-64 letters, digits, '_' or '-', starting with a letter or digit",
                param="id",
            )
        if voice_id in (await self.builtin()).ids:
            raise Conflict(f"{voice_id!r} is a built-in preset", param="id")
        try:
            preset = VoicePreset.from_npz_bytes(data)
        except InvalidVoiceError as exc:
            # An error about one array names it; one about the file as a whole names the field.
            param = exc.param if exc.param in PROMPT_KEYS else "file"
            raise InvalidRequest(str(exc), param=param) from exc
        fields = voice_store.encode(preset, "uploaded")
        key = self.keys.voice(voice_id)
        # HSETNX on the index makes "create unless it exists" atomic against a racing upload.
        if not overwrite and not await self.redis.hsetnx(self.keys.uploaded_voices, voice_id, fields["etag"]):
            raise Conflict(f"voice {voice_id!r} exists; DELETE it first", param="id")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.hset(self.keys.uploaded_voices, voice_id, fields["etag"])
            await pipe.execute()
        return _voice_out(voice_id, "uploaded")

    async def delete(self, voice_id: str) -> None:
        if voice_id in (await self.builtin()).ids:
            raise Conflict(f"{voice_id!r} is a built-in preset and cannot be deleted", param="id")
        if not VOICE_ID_RE.match(voice_id):  # never let a caller's string pick other keys
            raise NotFound(f"no uploaded voice {voice_id!r}", param="id")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.uploaded_voices, voice_id)
            pipe.delete(self.keys.voice(voice_id))
            removed, _ = await pipe.execute()
        if not removed:
            raise NotFound(f"no uploaded voice {voice_id!r}", param="id")
