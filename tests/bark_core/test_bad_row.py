"""A text the tokenizer refuses ends its own request and leaves its batch-mates untouched."""

from __future__ import annotations

import numpy as np

from bark_core.params import GenerationParams
from bark_core.pipeline import BarkPipeline
from bark_core.types import SynthesisRequest

POISON = "a\ud800b, one lone surrogate."  # what the API now refuses; the tokenizer raises on it


def test_a_refused_text_fails_alone(pipeline: BarkPipeline) -> None:
    params = GenerationParams(max_duration_s=0.2)
    good = [
        SynthesisRequest("Hello there.", None, params, seed=1),
        SynthesisRequest("Good day.", None, params, seed=2),
    ]
    alone = [np.concatenate([c.audio for c in pipeline.stream([r])]) for r in good]
    batch = [good[0], SynthesisRequest(POISON, None, params, seed=3), good[1]]
    chunks = list(pipeline.stream(batch))
    assert {c.request_index for c in chunks} == {0, 2}  # the refused row yields nothing
    for index, reference in ((0, alone[0]), (2, alone[1])):
        audio = np.concatenate([c.audio for c in chunks if c.request_index == index])
        np.testing.assert_array_equal(audio, reference)
