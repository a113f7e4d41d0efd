"""The worker's chunk checks (issue 16): the QualityChecker built once from the settings and
handed to the pipeline, and what the heartbeat says about which checks run."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from bark_core.quality import RANDOM_WEIGHTS_BLIND, CheckKind

from ..core.settings import Settings

if TYPE_CHECKING:
    from bark_core.pipeline import BarkPipeline

log = logging.getLogger(__name__)


def install_checks(settings: Settings, pipe: BarkPipeline) -> dict[str, str]:
    """Load the checker (VAD; Whisper where asked for) into `pipe`; return each check's state
    for /readyz: "on", or why it is off."""
    if settings.quality_attempts <= 1:
        pipe.set_quality(None)
        return {k.value: "off: BARK_QUALITY_ATTEMPTS is 1" for k in CheckKind}
    from bark_core.quality.checker import QualityChecker  # loads torch models: worker only

    blind = pipe.is_random_demo and not settings.quality_on_random_weights
    thresholds = settings.quality_thresholds
    if blind:  # neither the VAD nor Whisper is loaded for checks that would be off
        thresholds = dataclasses.replace(
            thresholds, skip=thresholds.skip | RANDOM_WEIGHTS_BLIND, trim_margin_s=None
        )
    checker = QualityChecker.load(
        thresholds,
        asr_model=settings.quality_asr_model or None,
        asr_device=settings.quality_asr_device,
        asr_language=settings.quality_asr_language or None,
    )
    if checker.asr_unavailable:
        log.warning("ASR check off: %s", checker.asr_unavailable)
    pipe.set_quality(checker, settings.quality_attempts, random_weights=blind)
    return check_states(settings, pipe, checker.asr_unavailable)


def check_states(settings: Settings, pipe: BarkPipeline, asr_unavailable: str | None) -> dict[str, str]:
    active = set(pipe.quality.active) if pipe.quality else set()
    blind = pipe.is_random_demo and not settings.quality_on_random_weights
    states = {}
    for kind in CheckKind:
        if kind in active:
            states[kind.value] = "on"
        elif kind.value in settings.quality_skip:
            states[kind.value] = "off: BARK_QUALITY_SKIP"
        elif blind and kind in RANDOM_WEIGHTS_BLIND:
            states[kind.value] = "off: random weights cannot give its signal"
        elif kind is CheckKind.ASR:
            states[kind.value] = (
                f"off: ASR unavailable ({asr_unavailable})"
                if asr_unavailable
                else "off: no BARK_QUALITY_ASR_MODEL"
            )
        else:
            states[kind.value] = "off"
    return states
