"""The API's view of voice presets: built-ins published by workers, uploads kept in Redis.

Uploads are bounded (count and stored bytes, per key and in all) and owned: each records a
hash of the key that made it, and only that key or an admin key may replace or delete it. The
checks and the write are one Lua script, so racing uploads (from any number of API processes)
cannot pass a limit together. Parsing an upload is CPU work: it runs in a thread, and only
once the cheap checks (the id, an existing preset) have passed.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import anyio
import redis.asyncio as aioredis

from bark_core.errors import InvalidVoiceError
from bark_core.voices import LANGUAGES, PROMPT_KEYS, VOICE_ID_RE, VoicePreset, language_of

from ..core.errors import Conflict, Forbidden, InvalidRequest, NotFound, UnknownVoice
from ..core.settings import Settings
from ..queue import voice_store
from ..queue.keys import Keys
from ..queue.wire import BUILTIN_ETAG, BuiltinVoices
from .protocol import VoiceOut

# Built-in ids without a '/' (the hub's v1 presets and 'announcer') match VOICE_ID_RE: they are
# reserved even before a worker has published its list, so an upload can never shadow one.
RESERVED_IDS = frozenset({"announcer"})
ECHO_CHARS = 64  # the most of a caller's id an error message repeats
_MEMBERS = sorted(f"{key}.npy" for key in PROMPT_KEYS)


@dataclass(frozen=True)
class VoiceLimits:
    per_key: int
    per_key_bytes: int
    total: int
    total_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> VoiceLimits:
        return cls(
            settings.voice_max_per_key,
            settings.voice_max_bytes_per_key,
            settings.voice_max_total,
            settings.voice_max_total_bytes,
        )


def shown(voice_id: str) -> str:
    """A caller's id as error messages repeat it: quoted, and cut short."""
    return repr(voice_id[:ECHO_CHARS] + ("..." if len(voice_id) > ECHO_CHARS else ""))


def version_of(voice_id: str) -> str | None:
    if voice_id.startswith("v2/"):
        return "v2"
    return "v1" if language_of(voice_id) else None


def _voice_out(voice_id: str, source: str) -> VoiceOut:
    lang = language_of(voice_id)
    return VoiceOut(
        id=voice_id,
        language=lang,
        language_name=LANGUAGES.get(lang) if lang else None,
        source=source,  # type: ignore[arg-type]
    )


def is_builtin_name(voice_id: str, builtin: BuiltinVoices) -> bool:
    return voice_id in builtin.ids or voice_id in RESERVED_IDS or language_of(voice_id) is not None


def parse_preset(data: bytes) -> VoicePreset:
    """An upload -> a validated preset, or InvalidRequest in our words (never numpy's)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = sorted(archive.namelist())
    except Exception as exc:  # BadZipFile, and whatever a forged directory raises
        raise InvalidRequest("file is not an .npz (zip) archive", param="file") from exc
    # Duplicates and strangers are refused here, before any member is read (11,236 copies
    # of one member took seconds to parse); a missing member is named by bark_core below.
    if len(names) != len(set(names)) or not set(names) <= set(_MEMBERS):
        raise InvalidRequest(
            f"an .npz preset holds exactly {', '.join(_MEMBERS)}, once each ({len(names)} members given)",
            param="file",
        )
    try:
        return VoicePreset.from_npz_bytes(data)
    except InvalidVoiceError as exc:
        param = exc.param if exc.param in PROMPT_KEYS else "file"
        if exc.__cause__ is not None:  # a parser's own error: its message may hold internals
            raise InvalidRequest(f"{param} is not a valid .npy array", param=param) from exc
        raise InvalidRequest(str(exc), param=param) from exc
    except Exception as exc:  # zlib, EOF, a header numpy cannot evaluate...
        raise InvalidRequest("file is not a valid .npz preset", param="file") from exc


# KEYS: index (id -> etag), meta (id -> "owner bytes"), the preset's hash.
# ARGV: id, etag, owner, bytes, overwrite, admin, 4 limits, then field/value pairs.
_UPLOAD = """
local id, etag, owner, size = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local exists = redis.call('HEXISTS', KEYS[1], id) == 1
if exists then
  if ARGV[5] ~= '1' then return 'exists' end
  local meta = redis.call('HGET', KEYS[2], id) or ''
  if ARGV[6] ~= '1' and string.match(meta, '^(%S*) ') ~= owner then return 'forbidden' end
end
local n_key, b_key, b_all = 0, 0, 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if all[i] ~= id then
    local o, s = string.match(all[i + 1], '^(%S*) (%d+)$')
    b_all = b_all + tonumber(s)
    if o == owner then n_key = n_key + 1; b_key = b_key + tonumber(s) end
  end
end
local n_all = redis.call('HLEN', KEYS[1]) - (exists and 1 or 0)
if n_key + 1 > tonumber(ARGV[7]) then return 'per_key' end
if b_key + size > tonumber(ARGV[8]) then return 'per_key_bytes' end
if n_all + 1 > tonumber(ARGV[9]) then return 'total' end
if b_all + size > tonumber(ARGV[10]) then return 'total_bytes' end
redis.call('DEL', KEYS[3])
for i = 11, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], id, etag)
redis.call('HSET', KEYS[2], id, owner .. ' ' .. size)
return 'ok'
"""
# KEYS as above; ARGV: id, owner, admin.
_DELETE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'missing' end
local meta = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if ARGV[3] ~= '1' and string.match(meta, '^(%S*) ') ~= ARGV[2] then return 'forbidden' end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 'ok'
"""
_FULL = {
    "per_key": "this API key holds {per_key} uploaded presets, the most it may",
    "per_key_bytes": "this API key's presets would exceed {per_key_bytes} stored bytes",
    "total": "the server holds {total} uploaded presets, the most it may",
    "total_bytes": "uploaded presets would exceed {total_bytes} stored bytes in all",
}


class VoiceCatalog:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        # Owner and stored size of each upload (beside keys.uploaded_voices, which workers read).
        self.meta_key = f"{keys.uploaded_voices}:meta"
        self._upload = redis.register_script(_UPLOAD)
        self._delete = redis.register_script(_DELETE)

    async def builtin(self) -> BuiltinVoices:
        """What the workers published: their model, whether it is random, its presets."""
        return BuiltinVoices.from_json(await self.redis.get(self.keys.builtin_voices))

    async def uploaded_ids(self) -> list[str]:
        raw = await self.redis.hkeys(self.keys.uploaded_voices)
        return [k.decode() if isinstance(k, bytes) else k for k in raw]

    async def list(self, limit: int, after: str | None) -> tuple[BuiltinVoices, list[VoiceOut], bool]:
        """One page of every preset, by id, after `after`; and whether more follow."""
        builtin = await self.builtin()
        entries = {v: "builtin" for v in builtin.ids}
        entries.update({v: "uploaded" for v in await self.uploaded_ids() if v not in entries})
        ids = sorted(v for v in entries if after is None or v > after)
        page = [_voice_out(v, entries[v]) for v in ids[:limit]]
        return builtin, page, len(ids) > limit

    async def etag(self, voice_id: str) -> str:
        """The version a job should pin for `voice_id`; UnknownVoice if there is none."""
        etag: bytes | None = await self.redis.hget(self.keys.uploaded_voices, voice_id)  # type: ignore[assignment]
        if etag is not None:
            return etag.decode()
        if voice_id in (await self.builtin()).ids:
            return BUILTIN_ETAG
        raise UnknownVoice(f"unknown voice {shown(voice_id)}; GET /voices lists the presets")

    async def upload(
        self, voice_id: str, data: bytes, *, overwrite: bool, owner: str, admin: bool, limits: VoiceLimits
    ) -> VoiceOut:
        if not VOICE_ID_RE.match(voice_id):
            raise InvalidRequest(
                "voice id must be 1-64 letters, digits, '_' or '-', starting with a letter or digit",
                param="id",
            )
        if is_builtin_name(voice_id, await self.builtin()):
            raise Conflict(f"{shown(voice_id)} is a built-in preset's id", param="id")
        if not overwrite and await self.redis.hexists(self.keys.uploaded_voices, voice_id):
            raise Conflict(f"voice {shown(voice_id)} exists; DELETE it first", param="id")
        preset = await anyio.to_thread.run_sync(parse_preset, data)
        fields = voice_store.encode(preset, "uploaded")
        fields["owner"] = owner
        size = voice_store.stored_bytes(fields)
        pairs = [item for pair in fields.items() for item in pair]
        bounds = [limits.per_key, limits.per_key_bytes, limits.total, limits.total_bytes]
        keys = [self.keys.uploaded_voices, self.meta_key, self.keys.voice(voice_id)]
        args = [voice_id, fields["etag"], owner, size, int(overwrite), int(admin), *bounds, *pairs]
        outcome = (await self._upload(keys=keys, args=args)).decode()
        if outcome == "exists":  # created meanwhile by a racing upload
            raise Conflict(f"voice {shown(voice_id)} exists; DELETE it first", param="id")
        if outcome == "forbidden":
            raise Forbidden(f"voice {shown(voice_id)} was uploaded with another API key", param="id")
        if outcome in _FULL:
            message = _FULL[outcome].format(**vars(limits))
            raise Conflict(f"voice storage full: {message}; DELETE a preset first", param="file")
        return _voice_out(voice_id, "uploaded")

    async def delete(self, voice_id: str, *, owner: str, admin: bool) -> None:
        if voice_id in (await self.builtin()).ids:
            raise Conflict(f"{shown(voice_id)} is a built-in preset and cannot be deleted", param="id")
        if not VOICE_ID_RE.match(voice_id):  # never let a caller's string pick other keys
            raise NotFound(f"no uploaded voice {shown(voice_id)}", param="id")
        keys = [self.keys.uploaded_voices, self.meta_key, self.keys.voice(voice_id)]
        outcome = (await self._delete(keys=keys, args=[voice_id, owner, int(admin)])).decode()
        if outcome == "missing":
            raise NotFound(f"no uploaded voice {shown(voice_id)}", param="id")
        if outcome == "forbidden":
            raise Forbidden(f"voice {shown(voice_id)} was uploaded with another API key", param="id")
