"""Voice presets: the real v2 presets validate; each bad field is rejected with its name."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bark_core.errors import CheckpointError, InvalidVoiceError, UnknownVoiceError
from bark_core.voices import (
    BUILTIN_VOICE_IDS,
    VoiceInfo,
    VoiceLibrary,
    VoicePreset,
    group_voices,
    is_builtin_voice_id,
    language_of,
)
from tests.support.required import ORIGINAL_ENV, PRESETS_ENV, skip_or_fail

# the 130 real v2 presets of suno-ai/bark, beside the repository (never copied into it)
SHARED_VOICES = Path(__file__).resolve().parents[3] / "shared" / "voices" / "v2"


def _good() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "semantic_prompt": rng.integers(0, 10_000, 200),
        "coarse_prompt": rng.integers(0, 1024, (2, 300)),
        "fine_prompt": rng.integers(0, 1024, (8, 300)).astype(np.int32),
    }


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_every_real_v2_preset_is_accepted() -> None:
    files = sorted(SHARED_VOICES.glob("*.npz"))
    if not files:
        skip_or_fail(PRESETS_ENV, f"the real presets are not at {SHARED_VOICES}")
    assert len(files) == 130
    for path in files:
        preset = VoicePreset.from_npz_file(path)
        assert preset.coarse.shape[0] == 2 and preset.fine.shape[0] == 8
        assert preset.semantic.dtype == np.int64


def test_every_preset_of_the_original_package_is_accepted() -> None:
    """bark==0.1.5 (installed by `make install`) ships the hub's v1, v2 and announcer presets."""
    spec = importlib.util.find_spec("bark")
    if spec is None or spec.origin is None:
        skip_or_fail(ORIGINAL_ENV, "bark==0.1.5 is not installed")
    prompts = Path(spec.origin).parent / "assets" / "prompts"
    ids = {p.relative_to(prompts).with_suffix("").as_posix() for p in prompts.rglob("*.npz")}
    assert set(BUILTIN_VOICE_IDS) <= ids  # our list of built-in ids is the original's
    for voice_id in BUILTIN_VOICE_IDS:
        preset = VoicePreset.from_npz_file(prompts / f"{voice_id}.npz")
        assert preset.fine.dtype == np.int64 and preset.fine.shape[0] == 8


def test_round_trip_through_npz_bytes() -> None:
    preset = VoicePreset.from_arrays(_good())
    again = VoicePreset.from_npz_bytes(preset.to_npz_bytes())
    for a, b in zip(preset.to_arrays().values(), again.to_arrays().values(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("semantic_prompt", np.zeros((2, 200), np.int64), "must be 1-D"),
        ("semantic_prompt", np.zeros(0, np.int64), "length must be in"),
        ("semantic_prompt", np.full(200, 10_000), "values must be in [0, 10000)"),
        ("semantic_prompt", np.full(200, -1), "values must be in"),
        ("semantic_prompt", np.zeros(200, np.float32), "must hold integers"),
        ("coarse_prompt", np.zeros((3, 300), np.int64), "shape (2, T)"),
        ("coarse_prompt", np.full((2, 300), 1024), "values must be in [0, 1024)"),
        ("coarse_prompt", np.zeros((2, 200), np.int64), "1.5 frames per semantic token"),
        ("fine_prompt", np.zeros((8, 5000), np.int64), "length must be in"),
        ("fine_prompt", np.zeros(300, np.int64), "shape (8, T)"),
    ],
)
def test_bad_field_is_named(field: str, value: np.ndarray, message: str) -> None:
    arrays = _good() | {field: value}
    with pytest.raises(
        InvalidVoiceError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ) as err:
        VoicePreset.from_arrays(arrays)
    assert err.value.param == field
    # the same through an upload
    with pytest.raises(InvalidVoiceError) as err:
        VoicePreset.from_npz_bytes(_npz(arrays))
    assert err.value.param == field


def test_missing_and_unknown_arrays() -> None:
    arrays = _good()
    del arrays["fine_prompt"]
    with pytest.raises(InvalidVoiceError, match="lacks fine_prompt"):
        VoicePreset.from_npz_bytes(_npz(arrays))
    with pytest.raises(InvalidVoiceError, match="unknown array"):
        VoicePreset.from_npz_bytes(_npz(_good() | {"extra": np.zeros(3, np.int64)}))


def test_pickled_object_arrays_are_refused() -> None:
    arrays = _good() | {"semantic_prompt": np.array([1, "x", None], dtype=object)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # allow_pickle is the default when saving
    with pytest.raises(InvalidVoiceError, match="must hold integers"):
        VoicePreset.from_npz_bytes(buffer.getvalue())


def test_forged_header_is_rejected_before_reading_data() -> None:
    """A header claiming 10^12 elements with a few bytes of data: refused by shape alone."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<i8", "fortran_order": False, "shape": (2, 10**12)}
    )
    payload = header.getvalue() + b"\0" * 64  # the header writer adds the magic
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("coarse_prompt.npy", payload)
    with pytest.raises(InvalidVoiceError, match="length must be in") as err:
        VoicePreset.from_npz_bytes(archive.getvalue())
    assert err.value.param == "coarse_prompt"


def test_truncated_data_is_rejected() -> None:
    data = _npz(_good())
    with pytest.raises(InvalidVoiceError):
        VoicePreset.from_npz_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidVoiceError, match=r"not an \.npz"):
        VoicePreset.from_npz_bytes(b"not a zip at all")


def test_library_ids_are_keys_never_paths(tiny_checkpoint: Path) -> None:
    library = VoiceLibrary.from_checkpoint(tiny_checkpoint)
    assert len(library.ids()) == 261 and set(library.ids()) == set(BUILTIN_VOICE_IDS)
    assert library.get("v2/en_speaker_6").semantic.ndim == 1
    for bad in [
        "../config",
        "v2/../../etc/passwd",
        "/etc/passwd",
        "v2/en_speaker_6.npz",
        "v2/en_speaker_6\0",
        "",
    ]:
        with pytest.raises(UnknownVoiceError):
            library.get(bad)


def test_languages() -> None:
    assert language_of("v2/en_speaker_6") == "en"
    assert language_of("de_speaker_1") == "de"
    assert language_of("announcer") is None


def test_v1_and_announcer_presets_load_as_int64(tiny_checkpoint: Path) -> None:
    library = VoiceLibrary.from_checkpoint(tiny_checkpoint)
    announcer = library.get("announcer")  # uint16 on disk
    assert announcer.semantic.dtype == announcer.fine.dtype == np.int64
    assert announcer.semantic.shape == (499,) and announcer.coarse.shape == (2, 750)
    assert library.get("en_speaker_6").fine.dtype == np.int64  # int32 on disk


def _library_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _file_of(root: Path, voice_id: str, key: str) -> Path:
    index = json.loads((root / "speaker_embeddings_path.json").read_text())
    return root / index[voice_id][key]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda f: f.unlink(),
            "cannot read speaker_embeddings/en_speaker_6_coarse_prompt.npy (No such file or directory)",
        ),
        (lambda f: f.write_bytes(b"not an npy file"), "cannot read"),
        (lambda f: f.write_bytes(f.read_bytes()[:100]), "cannot read"),
        (lambda f: np.save(f, np.zeros((3, 9), np.int64)), "is invalid: coarse_prompt must have shape"),
    ],
)
def test_a_broken_preset_file_fails_alone_with_its_name(  # type: ignore[no-untyped-def]
    tiny_checkpoint: Path, tmp_path: Path, damage, message: str
) -> None:
    root = _library_copy(tiny_checkpoint, tmp_path / "m")
    damage(_file_of(root, "en_speaker_6", "coarse_prompt"))
    library = VoiceLibrary.from_checkpoint(root)
    with pytest.raises(CheckpointError, match="built-in preset 'en_speaker_6'") as err:
        library.get("en_speaker_6")
    assert message in str(err.value) and err.value.param == "voice"
    assert str(root) not in str(err.value)  # the caller sees no server path
    # the others are still served, and the broken one stays listed (it is the checkpoint's)
    assert library.get("v2/en_speaker_6").coarse.shape[0] == 2
    assert library.get("en_speaker_5").coarse.shape[0] == 2
    assert "en_speaker_6" in library


def test_missing_preset_files_are_logged_once_at_load(
    tiny_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _library_copy(tiny_checkpoint, tmp_path / "m")
    _file_of(root, "announcer", "fine_prompt").unlink()
    _file_of(root, "v2/fr_speaker_1", "semantic_prompt").unlink()
    with caplog.at_level(logging.WARNING, logger="bark_core.voices"):
        library = VoiceLibrary.from_checkpoint(root)
    assert "2 voice preset(s)" in caplog.text and "announcer, v2/fr_speaker_1" in caplog.text
    assert library.warn_missing() == ["announcer", "v2/fr_speaker_1"]


def test_repo_or_path_is_ignored(tiny_checkpoint: Path, tmp_path: Path) -> None:
    root = _library_copy(tiny_checkpoint, tmp_path / "m")
    index_file = root / "speaker_embeddings_path.json"
    index = json.loads(index_file.read_text())
    index["repo_or_path"] = "/somewhere/else/entirely"
    index_file.write_text(json.dumps(index))
    library = VoiceLibrary.from_checkpoint(root)
    assert "repo_or_path" not in library and len(library.ids()) == 261
    assert library.get("v2/en_speaker_6").semantic.ndim == 1


def test_an_unreadable_index_is_a_checkpoint_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    root = _library_copy(tiny_checkpoint, tmp_path / "m")
    (root / "speaker_embeddings_path.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"speaker_embeddings_path\.json"):
        VoiceLibrary.from_checkpoint(root)


@pytest.mark.parametrize("voice_id", ["v2/en_speaker_6", "en_speaker_6", "zh_speaker_9", "announcer"])
def test_builtin_ids_v1_included(voice_id: str) -> None:
    assert is_builtin_voice_id(voice_id)


@pytest.mark.parametrize(
    "voice_id", ["my_voice", "en_speaker_10", "speaker_0", "Announcer", "xx_speaker_1", ""]
)
def test_other_ids_are_not_builtin(voice_id: str) -> None:
    assert not is_builtin_voice_id(voice_id)


def test_voices_group_by_language_v2_before_v1_announcer_last() -> None:
    ids = [*BUILTIN_VOICE_IDS, "v2/en_speaker_10", "my_voice", "xx_speaker_1"]
    groups = group_voices(reversed(ids))
    assert [g.language for g in groups][:3] == ["en", "de", "es"]
    assert [g.language for g in groups][-2:] == ["xx", None]
    english = groups[0]
    assert english.language_name == "English" and len(english.voices) == 21
    assert [v.id for v in english.voices[:2]] == ["v2/en_speaker_0", "v2/en_speaker_1"]
    assert english.voices[10].id == "v2/en_speaker_10"  # by number, not as text
    assert english.voices[11] == VoiceInfo("en_speaker_0", "en", "English", "v1")
    assert [v.id for v in groups[-1].voices] == ["announcer", "my_voice"]
    assert sum(len(g.voices) for g in groups) == len(ids)


def test_the_library_lists_its_presets_grouped(tiny_checkpoint: Path) -> None:
    groups = VoiceLibrary.from_checkpoint(tiny_checkpoint).grouped()
    assert len(groups) == 14 and groups[-1].voices == (VoiceInfo("announcer", None, None, None),)
    assert all(len(g.voices) == 20 for g in groups[:-1])
    assert {v.version for v in groups[5].voices} == {"v1", "v2"}
