"""How long a piece of text takes to say: one table of rates, per script.

Bark's semantic window holds ~13 s of speech (768 tokens at 49.9 Hz = 15.4 s at most), so the
chunk planner must know how long a text will be *spoken*, not how many characters it has:
200 characters are ~15 s of English but ~45 s of Mandarin.

Every rate is in `SECONDS`, keyed by `Unit`, and nowhere else. Where each comes from:

- Alphabetic letters (Latin, Greek, Cyrillic), 1/12 s each: English is spoken at ~150 words a
  minute (the conversational / audiobook figure the National Center for Voice and Speech
  gives), and running English averages ~4.7 letters a word, so ~12 letters a second. Russian,
  German and French words are longer but are spoken in as many letters a second within
  ~10-15%, which the planner's margin (a ~11 s target in a 15.4 s window) absorbs. Spaces,
  apostrophes and combining accents count nothing.
- Arabic letters, 0.1 s: an abjad leaves short vowels unwritten, so a written letter carries
  more of a syllable than a Latin one (~1.7 letters a syllable at ~5.5 syllables a second).
- Devanagari letters (consonants and independent vowels; vowel signs, virama and nukta count
  nothing), 0.15 s: on sample Hindi sentences one such letter is ~0.7 syllable, and Hindi is
  read at ~5 syllables a second.
- Han ideographs, 0.22 s (4.5 a second): one syllable each; Mandarin is read at ~5.2 syllables a
  second (Pellegrino, Coupé & Marsico 2011, "A cross-language perspective on speech
  information rate", Language 87(3): the slowest of their seven languages) and conversational
  Mandarin at 4-5. A Japanese kanji is ~2 morae, so Japanese kanji are estimated ~20% short.
- Kana, 0.13 s: one mora each, Japanese being read at ~7.8 morae a second (Pellegrino et al.
  2011); small kana that merge with the mora before them (ゃゅょ, ぁぃぅぇぉ, ...) count
  nothing, the long-vowel mark ー and the geminate っ count one mora.
- Hangul syllable blocks, 0.16 s: one syllable each; Korean is read at ~6-7 syllables a second
  (Coupé, Oh, Dediu & Pellegrino 2019, "Different languages, similar encoding efficiency",
  Science Advances 5(9)), rounded towards the slow end. Loose jamo (ㅋㅋ) count as syllables.
- Letters of any other script, 0.1 s (a guess between the alphabetic and syllabic rates).
- Digits, 0.3 s each: a digit read out is one or two syllables ("2024" is ~1.2 s).
- Nonverbal cues, 1 s each: `[laughs]`, `[sighs]`, `[music]`, `[clears throat]` and any
  `[...]` of at most `CUE_MAX_WORDS` words and `CUE_MAX_CHARS` characters; Bark renders them
  as a short sound. Its README lists them; the duration is ours.
- Pauses: `...`/`…` 0.5 s, a dash (— – ―) 0.3 s, sentence punctuation 0.3 s, clause
  punctuation 0.15 s (read-speech pauses run ~0.2-0.5 s at sentence ends and are shorter at
  commas; these are round values, not measured on Bark).
- Sung text between `♪` marks is `SONG_SLOWDOWN` (1.5x) slower: sung syllables are held.

Costs are kept in whole milliseconds, so estimates add up exactly: a text's estimate is the sum
of its parts' (cut anywhere but inside a cue, an ellipsis or a song span).
"""

from __future__ import annotations

import re
import unicodedata
from enum import Enum
from functools import lru_cache
from types import MappingProxyType

import numpy as np


class Unit(str, Enum):
    """What one table entry counts."""

    LATIN = "latin letter"
    GREEK = "greek letter"
    CYRILLIC = "cyrillic letter"
    ARABIC = "arabic letter"
    DEVANAGARI = "devanagari letter"
    HAN = "han ideograph"
    KANA = "kana"
    HANGUL = "hangul syllable"
    OTHER_LETTER = "other letter"
    DIGIT = "digit"
    CUE = "nonverbal cue"
    ELLIPSIS = "ellipsis"
    DASH = "dash"
    SENTENCE_MARK = "sentence punctuation"
    CLAUSE_MARK = "clause punctuation"


# The one table of rates: seconds of speech per unit (see the module docstring for sources).
SECONDS = MappingProxyType(
    {
        Unit.LATIN: 1 / 12,
        Unit.GREEK: 1 / 12,
        Unit.CYRILLIC: 1 / 12,
        Unit.ARABIC: 0.10,
        Unit.DEVANAGARI: 0.15,
        Unit.HAN: 0.22,
        Unit.KANA: 0.13,
        Unit.HANGUL: 0.16,
        Unit.OTHER_LETTER: 0.10,
        Unit.DIGIT: 0.30,
        Unit.CUE: 1.0,
        Unit.ELLIPSIS: 0.5,
        Unit.DASH: 0.3,
        Unit.SENTENCE_MARK: 0.3,
        Unit.CLAUSE_MARK: 0.15,
    }
)
SONG_SLOWDOWN = 1.5
CUE_MAX_WORDS = 4
CUE_MAX_CHARS = 32

_MS = MappingProxyType({unit: round(seconds * 1000) for unit, seconds in SECONDS.items()})
# Units that a song slows down: speech sounds (pauses and cues keep their length).
_SUNG = frozenset(Unit) - {Unit.CUE, Unit.ELLIPSIS, Unit.DASH, Unit.SENTENCE_MARK, Unit.CLAUSE_MARK}

CUE_RE = re.compile(rf"\[[^\[\]]{{1,{CUE_MAX_CHARS}}}\]")
SONG_RE = re.compile(r"♪[^♪]*♪")
_ELLIPSIS_RE = re.compile(r"\.{3,}|…+")
_SMALL_KANA = frozenset("ぁぃぅぇぉゃゅょゎゕゖァィゥェォャュョヮヵヶㇰㇱㇲㇳㇴㇵㇶㇷㇸㇹㇺㇻㇼㇽㇾㇿ")
_SENTENCE_MARKS = frozenset(".!?。！？｡．।॥؟")
_CLAUSE_MARKS = frozenset(",;:，、；：،؛､")
_DASHES = frozenset("—–―")

# (first code point, last code point, unit) for the letter blocks the table names.
_BLOCKS = (
    (0x0041, 0x024F, Unit.LATIN),
    (0x0250, 0x02AF, Unit.LATIN),
    (0x1E00, 0x1EFF, Unit.LATIN),
    (0x0370, 0x03FF, Unit.GREEK),
    (0x1F00, 0x1FFF, Unit.GREEK),
    (0x0400, 0x052F, Unit.CYRILLIC),
    (0x0600, 0x06FF, Unit.ARABIC),
    (0x0750, 0x077F, Unit.ARABIC),
    (0x0900, 0x097F, Unit.DEVANAGARI),
    (0x3040, 0x30FF, Unit.KANA),
    (0x31F0, 0x31FF, Unit.KANA),
    (0xFF66, 0xFF9F, Unit.KANA),
    (0x3400, 0x4DBF, Unit.HAN),
    (0x4E00, 0x9FFF, Unit.HAN),
    (0xF900, 0xFAFF, Unit.HAN),
    (0x20000, 0x3FFFF, Unit.HAN),
    (0xAC00, 0xD7A3, Unit.HANGUL),
    (0x1100, 0x11FF, Unit.HANGUL),
    (0x3130, 0x318F, Unit.HANGUL),
)


@lru_cache(maxsize=4096)
def unit_of(char: str) -> Unit | None:
    """The table entry one character counts as, or None when it is not spoken on its own."""
    if char in _SENTENCE_MARKS:
        return Unit.SENTENCE_MARK
    if char in _CLAUSE_MARKS:
        return Unit.CLAUSE_MARK
    if char in _DASHES:
        return Unit.DASH
    category = unicodedata.category(char)
    if category == "Nd":
        return Unit.DIGIT
    if char in _SMALL_KANA or category[0] != "L":
        return None  # spaces, symbols, combining marks (vowel signs, accents), other punctuation
    point = ord(char)
    for first, last, unit in _BLOCKS:
        if first <= point <= last:
            return unit
    return Unit.OTHER_LETTER


def is_cue(match: re.Match[str]) -> bool:
    """A bracketed span Bark renders as a sound: a few words, e.g. `[clears throat]`."""
    inner = match.group()[1:-1].split()
    return 0 < len(inner) <= CUE_MAX_WORDS


def cue_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in CUE_RE.finditer(text) if is_cue(m)]


def song_spans(text: str) -> list[tuple[int, int]]:
    """`♪ ... ♪` spans, the marks paired left to right (an unpaired last mark opens nothing)."""
    return [m.span() for m in SONG_RE.finditer(text)]


def char_costs(text: str) -> np.ndarray:
    """Milliseconds of speech charged to each character of `text` (int64, same length).

    A cue or an ellipsis is charged to its first character, its other characters cost nothing.
    """
    units = [unit_of(char) for char in text]
    costs = np.array([_MS[unit] if unit else 0 for unit in units], dtype=np.int64)
    sung = np.zeros(len(text), dtype=bool)
    for start, end in song_spans(text):
        sung[start:end] = True
    slowed = sung & np.array([unit in _SUNG for unit in units], dtype=bool)
    costs[slowed] = np.round(costs[slowed] * SONG_SLOWDOWN).astype(np.int64)
    for pattern_spans, unit in ((_ellipsis_spans(text), Unit.ELLIPSIS), (cue_spans(text), Unit.CUE)):
        for start, end in pattern_spans:
            costs[start:end] = 0
            costs[start] = _MS[unit]
    return costs


def _ellipsis_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _ELLIPSIS_RE.finditer(text)]


def estimate_seconds(text: str) -> float:
    """The spoken duration of `text`, in seconds, from the rates in `SECONDS`."""
    return int(char_costs(text).sum()) / 1000
