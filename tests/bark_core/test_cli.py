"""`bark-tts` as a user runs it: the README's commands, and one-line errors with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bark_core.cli import _params, _parser
from bark_core.params import GenerationParams

BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "bark-tts"), *args], capture_output=True, text=True, timeout=300)


def test_make_checkpoint_then_synthesize(tmp_path: Path) -> None:
    model = tmp_path / "m"
    made = _run("make-checkpoint", str(model))
    assert made.returncode == 0, made.stderr
    out = tmp_path / "hello.wav"
    voice = tmp_path / "gen.npz"
    done = _run(
        "synthesize",
        "Hello there.",
        "--model",
        str(model),
        "--voice",
        "v2/en_speaker_6",
        "-o",
        str(out),
        "--max-duration",
        "1",
        "--save-voice",
        str(voice),
    )
    assert done.returncode == 0, done.stderr
    audio, rate = sf.read(out)
    assert rate == 24_000 and audio.ndim == 1 and len(audio) == 75 * 320  # 1 s: 50 tokens -> 75 frames
    assert "semantic" in done.stderr  # the per-stage progress bars
    saved = np.load(voice, allow_pickle=False)
    assert saved["semantic_prompt"].shape == (50,) and saved["fine_prompt"].shape == (8, 75)
    # the saved generation works as a voice
    again = _run(
        "synthesize",
        "Again.",
        "--model",
        str(model),
        "--voice",
        str(voice),
        "-o",
        str(tmp_path / "again.wav"),
        "--max-duration",
        "0.5",
    )
    assert again.returncode == 0, again.stderr
    assert (model / "pytorch_model.bin").is_file()  # the hub layout by default
    listed = _run("voices", "--model", str(model)).stdout.splitlines()
    assert len(listed) == 261 and listed[-1] == "announcer\t-\t-"
    assert listed[:2] == ["v2/en_speaker_0\tEnglish\tv2", "v2/en_speaker_1\tEnglish\tv2"]
    assert listed.index("en_speaker_6\tEnglish\tv1") == 16  # v2 first, then v1, by language


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--voice", "v2/nope"], "unknown voice 'v2/nope'"),
        (["--voice", "missing.npz"], "voice file missing.npz does not exist"),
        (["--text-temp", "3"], "text_temp must be in [0, 2]"),
        (["--max-duration", "-2"], "must be > 0"),
        (["--dtype", "float16"], "float16 is not supported on CPU"),
        (["--model", "/no/such/dir"], "no checkpoint directory"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tiny_checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = ["synthesize", "Hi.", "-o", str(tmp_path / "x.wav"), "--model", str(tiny_checkpoint)]
    result = _run(*base, *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_make_checkpoint_safetensors_layout(tmp_path: Path) -> None:
    made = _run("make-checkpoint", str(tmp_path / "m"), "--layout", "safetensors")
    assert made.returncode == 0, made.stderr
    assert "safetensors layout" in made.stdout
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert not (tmp_path / "m" / "pytorch_model.bin").exists()


def _synthesize_to(output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # the model does not exist either: an error about the output shows it was checked first
    return _run("synthesize", "Hi.", "-o", str(output), "--model", "/no/such/model", *extra)


def test_an_output_in_a_missing_directory_fails_before_the_model_is_loaded(tmp_path: Path) -> None:
    result = _synthesize_to(tmp_path / "gone" / "x.wav")
    assert result.returncode == 2
    where = f"{tmp_path}/gone"
    assert result.stderr.strip() == (
        f"bark-tts: error: cannot write output {where}/x.wav: directory {where} does not exist"
    )


def test_an_output_that_is_a_directory_fails_before_the_model_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "a.wav").mkdir()
    result = _synthesize_to(tmp_path / "a.wav")
    assert result.returncode == 2
    assert result.stderr.strip() == f"bark-tts: error: output {tmp_path}/a.wav is a directory"


def test_an_unwritable_save_voice_fails_first_too(tmp_path: Path) -> None:
    result = _synthesize_to(tmp_path / "x.wav", "--save-voice", str(tmp_path / "gone" / "v.npz"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        f"bark-tts: error: cannot write --save-voice {tmp_path}/gone/v.npz"
    )


def test_generation_defaults_are_the_librarys() -> None:
    args = _parser().parse_args(["synthesize", "Hi.", "-o", "x.wav"])
    assert _params(args) == GenerationParams()
