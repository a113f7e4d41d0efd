"""Generation parameters, validated once where they enter the library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .constants import MAX_SEMANTIC_TOKENS, SEMANTIC_RATE_HZ, semantic_token_cap
from .errors import InvalidParameterError

# The history prompt of a request's text chunks (see `resolve_continuity` for the default):
# fixed   every chunk uses the preset (or none): the chunks are independent of each other;
# anchor  chunk 0 uses the preset (or none), every later chunk chunk 0's full generation:
#         one voice from the first chunk to the last, chunks 1..N independent of each other;
# rolling chunk k uses chunk k-1's full generation: the voice follows the text, sequentially.
Continuity = Literal["fixed", "anchor", "rolling"]
CONTINUITY_MODES: tuple[Continuity, ...] = ("fixed", "anchor", "rolling")
GREEDY_BELOW = 1e-3  # temperatures below this are greedy argmax
# Silence between a request's text chunks, as in the original's long-form notebook.
DEFAULT_CHUNK_PAUSE_S = 0.25
MAX_CHUNK_PAUSE_S = 5.0
MAX_DURATION_S = 1e4


def resolve_continuity(continuity: Continuity | None, has_voice: bool) -> Continuity:
    """The mode a request runs in; None picks the default.

    With a preset the default is `fixed`: every chunk is conditioned on the curated prompt
    itself, which holds the voice at least as well as a generated one, nothing drifts, and
    the chunks are independent (they run in parallel). Without one it is `anchor`: `fixed`
    would give every chunk its own random speaker, and `anchor` holds chunk 0's speaker while
    chunks 1..N still run in parallel (`rolling` would too, but sequentially, and it lets
    the voice wander chunk by chunk)."""
    if continuity is not None:
        return continuity
    return "fixed" if has_voice else "anchor"


def semantic_tokens_for(seconds: float) -> int:
    """The semantic tokens of `seconds` of speech: round(seconds * 49.9), in [1, 768]."""
    return max(1, min(MAX_SEMANTIC_TOKENS, round(seconds * SEMANTIC_RATE_HZ)))


@dataclass(frozen=True)
class GenerationParams:
    """Sampling knobs of the three token stages. A temperature of 0 means greedy argmax.

    Defaults are the original's `generate_audio`: text_temp 0.7, waveform_temp 0.7 (coarse),
    fine_temp 0.5, min_eos_p 0.2, no top-k / top-p. `continuity` None: `resolve_continuity`
    picks it. `chunk_pause_s`: the silence that opens every chunk after the first.
    """

    text_temp: float = 0.7
    waveform_temp: float = 0.7
    fine_temp: float = 0.5
    top_k: int | None = None
    top_p: float | None = None
    min_eos_p: float | None = 0.2
    max_duration_s: float | None = None
    continuity: Continuity | None = None
    chunk_pause_s: float = DEFAULT_CHUNK_PAUSE_S

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
        if self.max_duration_s is not None and not 0.0 < self.max_duration_s <= MAX_DURATION_S:
            raise InvalidParameterError(
                f"max_duration_s must be > 0, got {self.max_duration_s}", param="max_duration_s"
            )
        if self.continuity is not None and self.continuity not in CONTINUITY_MODES:
            raise InvalidParameterError(
                f"continuity must be one of {list(CONTINUITY_MODES)} or null, got {self.continuity!r}",
                param="continuity",
            )
        if not 0.0 <= self.chunk_pause_s <= MAX_CHUNK_PAUSE_S:
            raise InvalidParameterError(
                f"chunk_pause_s must be in [0, {MAX_CHUNK_PAUSE_S}], got {self.chunk_pause_s}",
                param="chunk_pause_s",
            )

    @property
    def max_semantic_tokens(self) -> int:
        """The semantic-token cap per text chunk: where bark 0.1.5 stops for max_duration_s
        (the first count whose summed 1/49.9 s exceeds it), at most 768."""
        if self.max_duration_s is None:
            return MAX_SEMANTIC_TOKENS
        return semantic_token_cap(self.max_duration_s)

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
