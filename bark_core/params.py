"""Generation parameters, validated once where they enter the library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .constants import MAX_SEMANTIC_TOKENS, SEMANTIC_RATE_HZ
from .errors import InvalidParameterError

Continuity = Literal["fixed", "rolling"]
GREEDY_BELOW = 1e-3  # temperatures below this are greedy argmax


@dataclass(frozen=True)
class GenerationParams:
    """Sampling knobs of the three token stages. A temperature of 0 means greedy argmax.

    Defaults are the original's `generate_audio`: text_temp 0.7, waveform_temp 0.7 (coarse),
    fine_temp 0.5, min_eos_p 0.2, no top-k / top-p.
    """

    text_temp: float = 0.7
    waveform_temp: float = 0.7
    fine_temp: float = 0.5
    top_k: int | None = None
    top_p: float | None = None
    min_eos_p: float | None = 0.2
    max_duration_s: float | None = None
    continuity: Continuity = "fixed"

    def __post_init__(self) -> None:
        for name in ("text_temp", "waveform_temp", "fine_temp"):
            value = getattr(self, name)
            if not 0.0 <= value <= 2.0:
                raise InvalidParameterError(f"{name} must be in [0, 2], got {value}", param=name)
            if value < GREEDY_BELOW:
                # logits / 3e-208 overflow to inf and softmax gives NaN (a fuzzer found it)
                object.__setattr__(self, name, 0.0)
        if self.top_k is not None and self.top_k < 1:
            raise InvalidParameterError(f"top_k must be >= 1, got {self.top_k}", param="top_k")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise InvalidParameterError(f"top_p must be in (0, 1], got {self.top_p}", param="top_p")
        if self.min_eos_p is not None and not 0.0 <= self.min_eos_p <= 1.0:
            raise InvalidParameterError(
                f"min_eos_p must be in [0, 1], got {self.min_eos_p}", param="min_eos_p"
            )
        if self.max_duration_s is not None and not 0.0 < self.max_duration_s <= 1e4:
            raise InvalidParameterError(
                f"max_duration_s must be > 0, got {self.max_duration_s}", param="max_duration_s"
            )
        if self.continuity not in ("fixed", "rolling"):
            raise InvalidParameterError(
                f"continuity must be 'fixed' or 'rolling', got {self.continuity!r}",
                param="continuity",
            )

    @property
    def max_semantic_tokens(self) -> int:
        """The semantic-token cap per text chunk: round(max_duration_s * 49.9), at most 768."""
        if self.max_duration_s is None:
            return MAX_SEMANTIC_TOKENS
        return max(1, min(MAX_SEMANTIC_TOKENS, round(self.max_duration_s * SEMANTIC_RATE_HZ)))

    @classmethod
    def greedy(cls, **overrides: object) -> GenerationParams:
        """All temperatures 0 and EOS only when it is the argmax: the original's greedy path."""
        base: dict[str, object] = {
            "text_temp": 0.0,
            "waveform_temp": 0.0,
            "fine_temp": 0.0,
            "min_eos_p": None,
        }
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]
