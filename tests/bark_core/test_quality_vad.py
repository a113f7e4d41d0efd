"""The VAD on real speech: Debian's espeak-ng speaks a sentence, silero-vad must find it.

Where espeak-ng cannot be installed the speech tests skip with that reason; with
BARK_REQUIRE_ESPEAK=1 (set by .ci/run where it installed it) a skip is a failure instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bark_core.constants import SAMPLE_RATE
from bark_core.quality import CheckKind, QualityThresholds
from bark_core.quality.checker import QualityChecker
from bark_core.quality.vad import SpeechDetector, resample

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs away."


def _espeak() -> str:
    found = shutil.which("espeak-ng")
    if found:
        return found
    reason = "espeak-ng is not installed (.ci/run installs it with apt-get)"
    if os.environ.get("BARK_REQUIRE_ESPEAK") == "1":
        pytest.fail(f"BARK_REQUIRE_ESPEAK=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The sentence spoken by espeak-ng, at 24 kHz, starting and ending at its own edges."""
    wav = Path(tmp_path_factory.mktemp("espeak")) / "sentence.wav"
    subprocess.run([_espeak(), "-w", str(wav), SENTENCE], check=True, capture_output=True)
    audio, rate = sf.read(wav, dtype="float32")
    return resample(audio, rate, SAMPLE_RATE)


@pytest.fixture(scope="module")
def checker() -> QualityChecker:
    return QualityChecker.load(QualityThresholds())


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), np.float32)


def test_speech_is_found_in_a_spoken_sentence(speech: np.ndarray, checker: QualityChecker) -> None:
    segments = checker.detector.segments(speech)
    duration = len(speech) / SAMPLE_RATE
    assert segments, "no speech found in espeak-ng's sentence"
    speech_s = sum(s.end_s - s.start_s for s in segments)
    assert speech_s > 0.6 * duration  # espeak leaves only short pauses
    verdict = checker.audio(speech, SENTENCE)
    assert [r.kind for r in verdict.results] == [CheckKind.NO_SPEECH, CheckKind.LATE_END]
    assert all(r.passed for r in verdict.results), verdict.results
    assert CheckKind.ASR not in checker.active and CheckKind.LATE_END in checker.active


def test_no_speech_in_digital_silence_or_noise(checker: QualityChecker) -> None:
    assert checker.detector.segments(_silence(3.0)) == []
    noise = np.random.default_rng(0).normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32)
    assert checker.detector.segments(noise) == []
    verdict = checker.audio(_silence(3.0), SENTENCE)
    assert [(r.kind, r.passed) for r in verdict.results] == [(CheckKind.NO_SPEECH, False)]
    assert verdict.trim.removed_s == 0.0


def test_added_silence_is_trimmed_to_the_margin(speech: np.ndarray, checker: QualityChecker) -> None:
    margin = checker.thresholds.trim_margin_s
    padded = np.concatenate([_silence(2.0), speech, _silence(5.0)])
    verdict = checker.audio(padded, SENTENCE)
    late = {r.kind: r for r in verdict.results}[CheckKind.LATE_END]
    assert not late.passed and late.score > 4.5  # 5 s of silence after the speech
    own = checker.detector.segments(speech)  # where the speech starts and ends on its own
    lead = verdict.trim.leading_s
    assert lead == pytest.approx(2.0 + own[0].start_s - margin, abs=0.1)
    tail = verdict.trim.trailing_s
    assert tail == pytest.approx(5.0 + len(speech) / SAMPLE_RATE - own[-1].end_s - margin, abs=0.1)
    # what is left is the speech with the margin either side, and it still holds all of it
    kept = verdict.trim.audio
    assert len(kept) / SAMPLE_RATE == pytest.approx(own[-1].end_s - own[0].start_s + 2 * margin, abs=0.2)
    again = checker.detector.segments(kept)
    assert again[0].start_s == pytest.approx(margin, abs=0.1)
    assert len(kept) / SAMPLE_RATE - again[-1].end_s == pytest.approx(margin, abs=0.1)


def test_trim_off_sends_the_audio_whole(speech: np.ndarray, checker: QualityChecker) -> None:
    padded = np.concatenate([_silence(2.0), speech, _silence(5.0)])
    keep = QualityChecker(QualityThresholds(trim_margin_s=None), checker.detector)
    verdict = keep.audio(padded, SENTENCE)
    assert verdict.trim.audio is padded and verdict.trim.removed_s == 0.0
    assert not {r.kind: r for r in verdict.results}[CheckKind.LATE_END].passed


def test_no_vad_is_loaded_when_nothing_needs_it() -> None:
    t = QualityThresholds(trim_margin_s=None, skip=frozenset({CheckKind.NO_SPEECH, CheckKind.LATE_END}))
    checker = QualityChecker.load(t)
    assert checker.detector is None
    assert checker.active == [CheckKind.RUN_ON, CheckKind.TRUNCATED, CheckKind.LOOP]
    assert checker.audio(_silence(1.0), SENTENCE).results == []


def test_loading_the_vad_keeps_the_callers_torch_threads() -> None:
    # silero_vad sets torch to one thread when imported; a fresh interpreter sees the import
    code = (
        "import torch; torch.set_num_threads(3); from bark_core.quality.vad import SpeechDetector; "
        "SpeechDetector(); print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "3"


def test_detector_takes_other_rates(speech: np.ndarray) -> None:
    detector = SpeechDetector()
    at_16k = detector.segments(resample(speech, SAMPLE_RATE, 16_000), 16_000)
    at_24k = detector.segments(speech)
    assert len(at_16k) == len(at_24k)
    assert at_16k[0].start_s == pytest.approx(at_24k[0].start_s, abs=0.05)
