"""Text normalisation and sentence chunking for Bark's ~13 s generation window."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .errors import InvalidTextError

# About 13 s of speech at ~15 characters a second: what one semantic window holds
# comfortably (768 tokens = 15.4 s). Longer sentences are cut at commas, then spaces.
MAX_CHUNK_CHARS = 200


def normalize_whitespace(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@lru_cache(maxsize=1)
def _segmenter() -> Any:
    import pysbd  # rule-based: no data download

    return pysbd.Segmenter(language="en", clean=False)


def _cut(sentence: str, limit: int) -> list[str]:
    """Cut one over-long sentence at the last comma (else space) before the limit."""
    pieces = []
    while len(sentence) > limit:
        window = sentence[: limit + 1]
        cut = max(window.rfind(", "), window.rfind("; "))
        cut = cut + 1 if cut > limit // 3 else window.rfind(" ")
        if cut <= 0:
            cut = limit
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        pieces.append(sentence)
    return pieces


def split_text(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Sentences packed greedily into chunks of at most `max_chars` characters."""
    text = normalize_whitespace(text)
    if not text:
        raise InvalidTextError("text is empty")
    sentences: list[str] = []
    for sentence in _segmenter().segment(text):
        sentences.extend(_cut(sentence.strip(), max_chars))
    chunks: list[str] = []
    for sentence in filter(None, sentences):
        if chunks and len(chunks[-1]) + 1 + len(sentence) <= max_chars:
            chunks[-1] = f"{chunks[-1]} {sentence}"
        else:
            chunks.append(sentence)
    return chunks
