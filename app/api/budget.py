"""How much audio one request may ask for: estimated before it is queued, refused with a 422.

The estimate is one function, `estimate_seconds`, so the long-form planner's
`bark_core.planner.estimate_seconds(text)` can replace the rule below when it lands.
"""

from __future__ import annotations

import math

from bark_core.text import MAX_CHUNK_CHARS

from ..core.errors import InvalidRequest

# Speech runs at about 12-15 characters a second (150 words a minute); the slower end makes
# the estimate an upper bound for ordinary text. The real model stops at EOS.
CHARS_PER_SECOND = 12.0


def estimate_seconds(text: str) -> float:
    """Seconds of speech `text` is expected to produce at speed 1."""
    return len(text) / CHARS_PER_SECOND


def request_seconds(text: str, max_duration_s: float | None, speed: float = 1.0) -> float:
    """The estimate for a whole request: from the text, bounded by its per-chunk cap (each
    chunk of at most MAX_CHUNK_CHARS yields at most max_duration_s), then stretched by speed."""
    seconds = estimate_seconds(text)
    if max_duration_s is not None:
        chunks = max(1, math.ceil(len(text) / MAX_CHUNK_CHARS))
        seconds = min(seconds, chunks * max_duration_s)
    return seconds / speed


def check_audio_budget(text: str, max_duration_s: float | None, speed: float, cap_s: float) -> None:
    seconds = request_seconds(text, max_duration_s, speed)
    if seconds > cap_s:
        raise InvalidRequest(
            f"this request would produce about {seconds:.0f} s of audio (at {CHARS_PER_SECOND:g} "
            f"characters a second, after speed {speed:g}); at most {cap_s:g} s may be asked at "
            "once: split the text, or raise speed",
            param="speed" if speed < 1.0 else "text",
        )
