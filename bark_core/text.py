"""Text normalisation, sentence segmentation, and the legacy character-based chunker.

`normalize_whitespace` is the one place where text is normalised: the planner
(bark_core/planner.py), `split_text` and the pipeline's text encoder all call it, so the text
a chunk holds is always a slice of the same normalised string.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

from .errors import InvalidTextError

# About 13 s of speech at ~15 characters a second: what one semantic window holds
# comfortably (768 tokens = 15.4 s). Longer sentences are cut at commas, then spaces.
MAX_CHUNK_CHARS = 200


def normalize_whitespace(text: str) -> str:
    """Every run of whitespace (newlines, tabs, NBSP, ideographic space) becomes one space; ends trimmed."""
    return re.sub(r"\s+", " ", text).strip()


@lru_cache(maxsize=1)
def pysbd_languages() -> frozenset[str]:
    """The ISO 639-1 codes pysbd has sentence rules for."""
    from pysbd.languages import LANGUAGE_CODES

    return frozenset(LANGUAGE_CODES)


@cache
def segmenter(language: str = "en") -> Any:
    """pysbd's rule-based segmenter (no data download), one per language, kept for reuse.

    `clean=False` keeps the text as given, so the segments concatenate back to the input.
    """
    import pysbd  # imported here: the API process imports this module and need not load it

    return pysbd.Segmenter(language=language, clean=False)


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
    """Sentences packed greedily into chunks of at most `max_chars` characters.

    Legacy: it assumes English (~15 characters a second). `planner.plan_chunks` packs by
    estimated spoken duration in every script and replaces it.
    """
    text = normalize_whitespace(text)
    if not text:
        raise InvalidTextError("text is empty")
    sentences: list[str] = []
    for sentence in segmenter("en").segment(text):
        sentences.extend(_cut(sentence.strip(), max_chars))
    chunks: list[str] = []
    for sentence in filter(None, sentences):
        if chunks and len(chunks[-1]) + 1 + len(sentence) <= max_chars:
            chunks[-1] = f"{chunks[-1]} {sentence}"
        else:
            chunks.append(sentence)
    return chunks
