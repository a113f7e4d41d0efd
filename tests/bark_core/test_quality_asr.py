"""The ASR check: its verdict on fixed transcripts, and its whole path (load, features,
generate, WER) on a random-weight Whisper checkpoint written here."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from bark_core.constants import SAMPLE_RATE
from bark_core.quality import CheckKind, QualityThresholds
from bark_core.quality.asr import AsrUnavailable, WhisperAsr, check_transcript, error_rate
from bark_core.quality.checker import QualityChecker
from bark_core.quality.whisper_maker import make_whisper_checkpoint

T = QualityThresholds()
TEXT = "Hello there! [laughs] This is bark-serve, speaking."


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_whisper_checkpoint(tmp_path_factory.mktemp("whisper") / "tiny", size="tiny")


def test_a_faithful_transcript_passes() -> None:
    result = check_transcript("hello there this is bark serve speaking", TEXT, T)
    assert result.passed and result.score == 0.0 and result.kind is CheckKind.ASR


def test_skipped_words_fail_by_word_error_rate() -> None:
    # 2 of the 7 reference words heard: 5 deletions
    result = check_transcript("Hello there.", TEXT, T)
    assert not result.passed
    assert result.score == pytest.approx(5 / 7, abs=1e-4)
    assert error_rate(TEXT, "hello there this is bark serve") == (pytest.approx(1 / 7), "wer")


def test_unspaced_scripts_are_compared_by_character() -> None:
    rate, measure = error_rate("你好，世界。", "你好世")
    assert measure == "cer" and rate == pytest.approx(1 / 4)
    assert not check_transcript("", "你好，世界。", T).passed


def test_a_text_of_cues_has_nothing_to_compare() -> None:
    assert check_transcript("some music", "[music]", T).passed


def test_whole_path_on_a_random_whisper(whisper_dir: Path) -> None:
    asr = WhisperAsr.load(str(whisper_dir), local_files_only=True, language="en")
    assert isinstance(asr, WhisperAsr)
    audio = np.random.default_rng(0).normal(0, 0.1, 2 * SAMPLE_RATE).astype(np.float32)
    transcript = asr.transcribe(audio, max_new_tokens=12)
    assert isinstance(transcript, str)
    assert asr.transcribe(audio, max_new_tokens=12) == transcript  # greedy: the same twice
    result = asr.check(audio, "Hello there.", T)
    # random weights hear no "hello there": the whole path ran and gave the worst score
    assert not result.passed and result.score >= 1.0
    assert result.detail.startswith("wer; heard")


def test_the_checker_runs_the_asr_check_last(whisper_dir: Path) -> None:
    checker = QualityChecker.load(T, asr_model=str(whisper_dir), asr_language="en")
    assert checker.asr_unavailable is None and checker.active[-1] is CheckKind.ASR
    verdict = checker.audio(np.zeros(SAMPLE_RATE, np.float32), "Hello there.")
    assert [r.kind for r in verdict.results] == [CheckKind.NO_SPEECH, CheckKind.ASR]


@pytest.mark.parametrize("model_id", ["openai/whisper-tiny", "{tmp}/no-such-model"])
def test_weights_that_cannot_be_loaded_turn_the_check_off(
    model_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_id = model_id.format(tmp=tmp_path)  # the hub id: HF_HUB_OFFLINE=1 (tests/conftest.py)
    with caplog.at_level(logging.WARNING, logger="bark_core.quality.asr"):
        checker = QualityChecker.load(T, asr_model=model_id)
    assert isinstance(checker.asr, AsrUnavailable) and checker.asr.model_id == model_id
    assert checker.asr_unavailable and model_id in caplog.text
    assert CheckKind.ASR not in checker.active
    assert len(caplog.records) == 1
    verdict = checker.audio(np.zeros(SAMPLE_RATE, np.float32), "Hello there.")
    assert [r.kind for r in verdict.results] == [CheckKind.NO_SPEECH]
