"""Voice presets: validated history prompts, looked up by id and never by caller-given path.

A preset is the original's npz layout: `semantic_prompt` (T_s,), `coarse_prompt` (2, T_c) and
`fine_prompt` (8, T_f), integer codes. Uploaded bytes are parsed with `allow_pickle=False`, and
each array's header is checked before its data is read, so a forged shape cannot make us
allocate anything large.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import (
    CODEBOOK_SIZE,
    N_COARSE_CODEBOOKS,
    N_FINE_CODEBOOKS,
    SEMANTIC_TO_COARSE_RATIO,
    SEMANTIC_VOCAB_SIZE,
)
from .errors import InvalidVoiceError, UnknownVoiceError

PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
MAX_SEMANTIC_PROMPT = 1024  # the real v2 presets hold 192..697
MAX_CODE_PROMPT = 2048  # the real v2 presets hold 288..1047 frames
MAX_NPZ_BYTES = 4 * 1024 * 1024

LANGUAGES = {
    "en": "English",
    "de": "German",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "pl": "Polish",
    "pt": "Portuguese",
    "ru": "Russian",
    "tr": "Turkish",
    "zh": "Chinese",
}
_LANG_RE = re.compile(r"^(?:v2/)?([a-z]{2})_speaker_\d+$")
# Ids a user may give to an uploaded preset: no '/', '..', NUL or anything path-like.
VOICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


def language_of(voice_id: str) -> str | None:
    """'v2/en_speaker_6' -> 'en'; None when the id names no language."""
    match = _LANG_RE.match(voice_id)
    return match.group(1) if match else None


def _expected_shape(key: str, shape: tuple[int, ...]) -> None:
    """Reject a prompt array by its header alone: rank, rows and length limits."""
    if key == "semantic_prompt":
        if len(shape) != 1:
            raise InvalidVoiceError(f"{key} must be 1-D, got shape {shape}", param=key)
        if not 1 <= shape[0] <= MAX_SEMANTIC_PROMPT:
            raise InvalidVoiceError(
                f"{key} length must be in [1, {MAX_SEMANTIC_PROMPT}], got {shape[0]}", param=key
            )
        return
    rows = N_COARSE_CODEBOOKS if key == "coarse_prompt" else N_FINE_CODEBOOKS
    if len(shape) != 2 or shape[0] != rows:
        raise InvalidVoiceError(f"{key} must have shape ({rows}, T), got {shape}", param=key)
    if not 1 <= shape[1] <= MAX_CODE_PROMPT:
        raise InvalidVoiceError(f"{key} length must be in [1, {MAX_CODE_PROMPT}], got {shape[1]}", param=key)


def _check_array(key: str, value: object) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise InvalidVoiceError(f"{key} must be an array", param=key)
    if value.dtype.kind not in "iu":
        raise InvalidVoiceError(f"{key} must hold integers, got dtype {value.dtype}", param=key)
    _expected_shape(key, value.shape)
    upper = SEMANTIC_VOCAB_SIZE if key == "semantic_prompt" else CODEBOOK_SIZE
    low, high = int(value.min()), int(value.max())
    if low < 0 or high >= upper:
        raise InvalidVoiceError(f"{key} values must be in [0, {upper}), got [{low}, {high}]", param=key)
    return value.astype(np.int64)


@dataclass(frozen=True)
class VoicePreset:
    """A validated history prompt. Arrays are int64."""

    semantic: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> VoicePreset:
        """Validate the three prompts as the original code would, with an error naming the field."""
        missing = [k for k in PROMPT_KEYS if k not in arrays]
        if missing:
            raise InvalidVoiceError(f"preset lacks {', '.join(missing)}", param=missing[0])
        extra = sorted(set(arrays) - set(PROMPT_KEYS))
        if extra:
            raise InvalidVoiceError(f"preset has unknown arrays: {', '.join(extra)}", param=extra[0])
        semantic = _check_array("semantic_prompt", arrays["semantic_prompt"])
        coarse = _check_array("coarse_prompt", arrays["coarse_prompt"])
        fine = _check_array("fine_prompt", arrays["fine_prompt"])
        # The original's check: coarse frames per semantic token rounds to 75 / 49.9 = 1.5.
        ratio = round(coarse.shape[1] / len(semantic), 1)
        if ratio != round(SEMANTIC_TO_COARSE_RATIO / N_COARSE_CODEBOOKS, 1):
            raise InvalidVoiceError(
                f"coarse_prompt must hold 1.5 frames per semantic token, got {ratio} "
                f"({coarse.shape[1]} frames for {len(semantic)} tokens)",
                param="coarse_prompt",
            )
        return cls(semantic=semantic, coarse=coarse, fine=fine)

    @classmethod
    def from_npz_bytes(cls, data: bytes) -> VoicePreset:
        """Parse an uploaded .npz without pickle, checking each header before reading data."""
        if len(data) > MAX_NPZ_BYTES:
            raise InvalidVoiceError(f"preset file exceeds {MAX_NPZ_BYTES} bytes")
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile as exc:
            raise InvalidVoiceError("preset is not an .npz (zip) file") from exc
        arrays: dict[str, np.ndarray] = {}
        with archive:
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                if key not in PROMPT_KEYS:
                    raise InvalidVoiceError(f"preset has an unknown array {key!r}", param=key)
                arrays[key] = _read_npy_member(archive, info, key)
        return cls.from_arrays(arrays)

    @classmethod
    def from_npz_file(cls, path: str | Path) -> VoicePreset:
        """A local .npz given by the operator (CLI), validated like an upload."""
        return cls.from_npz_bytes(Path(path).read_bytes())

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"semantic_prompt": self.semantic, "coarse_prompt": self.coarse, "fine_prompt": self.fine}

    def to_npz_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **self.to_arrays())  # type: ignore[arg-type]
        return buffer.getvalue()


def _read_npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> np.ndarray:
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        except ValueError as exc:
            raise InvalidVoiceError(f"{key} is not a valid .npy array: {exc}", param=key) from exc
        if dtype.hasobject or dtype.kind not in "iu":
            raise InvalidVoiceError(f"{key} must hold integers, got dtype {dtype}", param=key)
        _expected_shape(key, tuple(shape))  # before any data is read
        count = int(np.prod(shape))
        raw = member.read(count * dtype.itemsize + 1)
    if len(raw) != count * dtype.itemsize:
        raise InvalidVoiceError(f"{key} data length does not match its header", param=key)
    flat = np.frombuffer(raw, dtype=dtype)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    language: str | None
    language_name: str | None


class VoiceLibrary:
    """The checkpoint's presets, by id, as listed in its speaker_embeddings_path.json.

    A caller's id is only ever a dict key: the file paths come from the checkpoint's own index
    and must resolve inside the checkpoint directory.
    """

    def __init__(self, root: Path, index: dict[str, dict[str, str]]) -> None:
        self._root = root
        self._index = index
        self._cache: dict[str, VoicePreset] = {}

    @classmethod
    def from_checkpoint(cls, root: Path) -> VoiceLibrary:
        index_file = root / "speaker_embeddings_path.json"
        if not index_file.is_file():
            return cls(root, {})
        raw = json.loads(index_file.read_text(encoding="utf-8"))
        index = {
            key: value for key, value in raw.items() if key != "repo_or_path" and isinstance(value, dict)
        }
        return cls(root, index)

    def ids(self) -> list[str]:
        return sorted(self._index)

    def list(self) -> list[VoiceInfo]:
        out = []
        for voice_id in self.ids():
            lang = language_of(voice_id)
            out.append(VoiceInfo(voice_id, lang, LANGUAGES.get(lang) if lang else None))
        return out

    def __contains__(self, voice_id: object) -> bool:
        return isinstance(voice_id, str) and voice_id in self._index

    def get(self, voice_id: str) -> VoicePreset:
        if voice_id not in self._index:
            raise UnknownVoiceError(
                f"unknown voice {voice_id!r}; `bark-tts voices` or GET /voices lists the presets"
            )
        if voice_id not in self._cache:
            self._cache[voice_id] = self._load(voice_id)
        return self._cache[voice_id]

    def _load(self, voice_id: str) -> VoicePreset:
        arrays = {}
        for key in PROMPT_KEYS:
            rel = self._index[voice_id].get(key)
            if rel is None:
                raise InvalidVoiceError(f"checkpoint preset {voice_id!r} lacks {key}", param=key)
            # Checked before resolving: hub snapshots are symlinks into a blob store.
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise InvalidVoiceError(f"checkpoint preset {voice_id!r} points outside it")
            arrays[key] = np.load(self._root / rel, allow_pickle=False)
        return VoicePreset.from_arrays(arrays)
