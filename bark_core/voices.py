"""Voice presets: validated history prompts, looked up by id and never by caller-given path.

A preset is the original's npz layout: `semantic_prompt` (T_s,), `coarse_prompt` (2, T_c) and
`fine_prompt` (8, T_f), integer codes. Uploaded bytes are parsed with `allow_pickle=False`, and
each array's header is checked before its data is read, so a forged shape cannot make us
allocate anything large.
"""

from __future__ import annotations

import builtins
import io
import json
import logging
import re
import zipfile
from collections.abc import Iterable
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
from .errors import CheckpointError, InvalidVoiceError, UnknownVoiceError

log = logging.getLogger(__name__)

PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
INDEX_FILE = "speaker_embeddings_path.json"  # preset id -> its three .npy files
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
_SPEAKER_RE = re.compile(r"^(v2/)?([a-z]{2})_speaker_(\d+)$")
# Ids a user may give to an uploaded preset: no '/', '..', NUL or anything path-like.
VOICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")

# The presets of suno/bark and suno/bark-small (the original's bark/assets/prompts): ten
# speakers per language in two generations, v2 (`v2/en_speaker_6`) and v1 (`en_speaker_6`),
# and one English `announcer`.
SPEAKERS_PER_LANGUAGE = 10
ANNOUNCER = "announcer"
BUILTIN_VOICE_IDS: tuple[str, ...] = (
    *(f"v2/{lang}_speaker_{n}" for lang in LANGUAGES for n in range(SPEAKERS_PER_LANGUAGE)),
    *(f"{lang}_speaker_{n}" for lang in LANGUAGES for n in range(SPEAKERS_PER_LANGUAGE)),
    ANNOUNCER,
)
_BUILTIN = frozenset(BUILTIN_VOICE_IDS)


def is_builtin_voice_id(voice_id: str) -> bool:
    """True for an id the hub checkpoints ship (v2 and v1 speakers, `announcer`), whichever
    checkpoint is served: an upload must not take one, or the same id would mean two voices."""
    return voice_id in _BUILTIN


def language_of(voice_id: str) -> str | None:
    """'v2/en_speaker_6' -> 'en'; None when the id names no language."""
    match = _SPEAKER_RE.match(voice_id)
    return match.group(2) if match else None


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
    version: str | None = None  # "v2" or "v1" for the built-in speakers; None otherwise

    @classmethod
    def of(cls, voice_id: str) -> VoiceInfo:
        match = _SPEAKER_RE.match(voice_id)
        if match is None:
            return cls(voice_id, None, None)
        lang = match.group(2)
        return cls(voice_id, lang, LANGUAGES.get(lang), "v2" if match.group(1) else "v1")


@dataclass(frozen=True)
class VoiceGroup:
    """The presets of one language; `language` None holds those of none (`announcer`)."""

    language: str | None
    language_name: str | None
    voices: tuple[VoiceInfo, ...]


def _voice_order(info: VoiceInfo) -> tuple[int, int, str]:
    match = _SPEAKER_RE.match(info.id)
    speaker = int(match.group(3)) if match else 0
    return (0 if info.version == "v2" else 1, speaker, info.id)


def group_voices(ids: Iterable[str]) -> list[VoiceGroup]:
    """Presets by language (in LANGUAGES' order, then unknown codes), v2 before v1, speakers in
    number order; last, one group of the presets without a language. Torch-free: the API
    groups the ids the workers publish with it."""
    by_lang: dict[str | None, list[VoiceInfo]] = {}
    for voice_id in set(ids):
        info = VoiceInfo.of(voice_id)
        by_lang.setdefault(info.language, []).append(info)
    known = [lang for lang in LANGUAGES if lang in by_lang]
    unknown = sorted(lang for lang in by_lang if lang is not None and lang not in LANGUAGES)
    order: list[str | None] = [*known, *unknown, *([None] if None in by_lang else [])]
    return [
        VoiceGroup(
            lang, LANGUAGES.get(lang) if lang else None, tuple(sorted(by_lang[lang], key=_voice_order))
        )
        for lang in order
    ]


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
        """The presets listed in the checkpoint's index. Its `repo_or_path` entry (where the
        converter once ran, e.g. "ylacombe/bark-small") says nothing about this copy: ignored."""
        index_file = root / INDEX_FILE
        if not index_file.is_file():
            return cls(root, {})
        try:
            raw = json.loads(index_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {index_file}: {exc}") from exc
        if not isinstance(raw, dict):
            raise CheckpointError(f"{index_file} is not a JSON object")
        index = {
            key: value for key, value in raw.items() if key != "repo_or_path" and isinstance(value, dict)
        }
        library = cls(root, index)
        library.warn_missing()
        return library

    def warn_missing(self) -> list[str]:
        """Log (once, at load) the listed presets whose files are absent; each of them fails
        alone when asked for, and the others are served."""
        missing = [
            voice_id
            for voice_id, entry in self._index.items()
            if not all(isinstance(rel, str) and (self._root / rel).is_file() for rel in entry.values())
        ]
        if missing:
            log.warning(
                "%d voice preset(s) listed in %s have missing files and will fail when used: %s",
                len(missing),
                INDEX_FILE,
                ", ".join(sorted(missing)[:10]) + (" ..." if len(missing) > 10 else ""),
            )
        return sorted(missing)

    def ids(self) -> list[str]:
        return sorted(self._index)

    def list(self) -> list[VoiceInfo]:
        return [VoiceInfo.of(voice_id) for voice_id in self.ids()]

    def grouped(self) -> builtins.list[VoiceGroup]:
        """The presets by language, v2 before v1, and `announcer` last (see `group_voices`)."""
        return group_voices(self._index)

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
        """A broken preset is the checkpoint's fault, not the caller's: CheckpointError, for
        this preset alone (nothing is cached, so a repaired file is read on the next ask)."""
        arrays = {key: self._read(voice_id, key) for key in PROMPT_KEYS}
        try:
            return VoicePreset.from_arrays(arrays)
        except InvalidVoiceError as exc:
            raise CheckpointError(f"built-in preset {voice_id!r} is invalid: {exc}", param="voice") from exc

    def _read(self, voice_id: str, key: str) -> np.ndarray:
        rel = self._index[voice_id].get(key)
        if not isinstance(rel, str):
            raise CheckpointError(f"built-in preset {voice_id!r} lacks {key} in {INDEX_FILE}", param="voice")
        # Checked before resolving: hub snapshots are symlinks into a blob store.
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise CheckpointError(
                f"built-in preset {voice_id!r} points outside the checkpoint", param="voice"
            )
        try:
            return np.load(self._root / rel, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            # the reason without the server's own path: the message reaches the caller
            why = (exc.strerror if isinstance(exc, OSError) else str(exc)) or type(exc).__name__
            raise CheckpointError(
                f"built-in preset {voice_id!r}: cannot read {rel} ({why})", param="voice"
            ) from exc
