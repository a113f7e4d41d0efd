"""How much audio one request may ask for: estimated before it is queued, refused with a 422.

The estimate is the planner's (bark_core.speech_rate: per script, cues and pauses), which is
cheap enough for the event loop; the chunk count is the estimate over the chunk target.
"""

from __future__ import annotations

import math

from bark_core.planner import DEFAULT_TARGET_S, estimate_seconds

from ..core.errors import InvalidRequest


def request_seconds(text: str, max_duration_s: float | None, speed: float = 1.0) -> float:
    """The estimate for a whole request: from the text, bounded by its per-chunk cap (each
    chunk of about DEFAULT_TARGET_S yields at most max_duration_s), then stretched by speed."""
    seconds = estimate_seconds(text)
    if max_duration_s is not None:
        chunks = max(1, math.ceil(seconds / DEFAULT_TARGET_S))
        seconds = min(seconds, chunks * max_duration_s)
    return seconds / speed


def check_audio_budget(text: str, max_duration_s: float | None, speed: float, cap_s: float) -> None:
    seconds = request_seconds(text, max_duration_s, speed)
    if seconds > cap_s:
        raise InvalidRequest(
            f"this request would produce about {seconds:.0f} s of audio (estimated from its text, "
            f"after speed {speed:g}); at most {cap_s:g} s may be asked at once: split the text, or "
            "raise speed",
            param="speed" if speed < 1.0 else "text",
        )
