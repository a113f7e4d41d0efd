"""Voice presets: the real v2 presets validate; each bad field is rejected with its name."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bark_core.errors import InvalidVoiceError, UnknownVoiceError
from bark_core.voices import VoiceLibrary, VoicePreset, language_of
from tests.support.required import PRESETS_ENV, skip_or_fail

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
    assert len(library.ids()) == 130
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
