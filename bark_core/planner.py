"""Long text cut into chunks that Bark can speak, planned by estimated spoken duration.

`plan_chunks(text, language)` normalises the text (`text.normalize_whitespace`), finds every
place it may be cut, strongest first, and packs the pieces greedily:

0. sentence ends: pysbd's rules in the request's language where pysbd has them (a Bark preset
   language such as "fr"), else in the language of the text's dominant script, else English;
   plus CJK full stops (。！？) outside Chinese and Japanese rules and the danda (।) outside
   Hindi and Marathi rules, which pysbd misses there; closing quotes and brackets stay with
   their sentence;
1. clause punctuation: `, ; :` (and `، ؛ — – … ...`) followed by a space, and `，、；：`
   anywhere;
2. spaces;
3. between two Han or kana characters (Chinese and Japanese do not separate words);
4. only for a piece that still exceeds the limits (a single word longer than the target):
   between any two characters, never before a combining mark.

No cut is ever made inside a nonverbal cue (`[laughs]`) or inside a `♪ ... ♪` span whose whole
text fits the limits. A piece is cut at the strongest level that has a cut in it, and each
part that still does not fit is cut again at the next level. Every chunk's estimate
(`speech_rate.estimate_seconds`, one table of rates) stays within `target_s` and its text within
`max_tokens` tokens: by `count_tokens` when the caller has Bark's tokenizer, else by the number
of non-space characters, which bounds a BERT WordPiece count from above (each token covers at
least one character, and `[UNK]` a whole word).

Packing is greedy, but a chunk that must close ends at the strongest cut among its pieces
(a sentence end, else a clause, else a word) that leaves it at least half of its limit.

The first chunk is short, so that audio starts early: it is packed alone within
`first_chunk_s` (by that rule its first sentences or clauses, or its first words when the
first clause is longer), and the rest is packed within `target_s`.

Joining: the chunks tile the normalised text. `chunk.sep` is what stood between the previous
chunk and this one: " " where the cut was at a space (every cut in space-separated scripts),
"" where it was between characters (CJK) and for chunk 0. So
`join_chunks(plan_chunks(t)) == normalize_whitespace(t)`.

The planner is deterministic: the same text, language and settings give the same chunks.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .constants import MAX_TEXT_TOKENS
from .errors import InvalidParameterError, InvalidTextError
from .speech_rate import Unit, char_costs, cue_spans, song_spans, unit_of
from .speech_rate import estimate_seconds as estimate_seconds
from .text import normalize_whitespace, pysbd_languages, segmenter

DEFAULT_TARGET_S = 11.0  # well inside Bark's ~13 s window (768 semantic tokens = 15.4 s)
DEFAULT_FIRST_CHUNK_S = 4.0
MIN_TARGET_S = 2.0  # twice a cue, so that every cue and word fits a chunk

SENTENCE, CLAUSE, SPACE, CHARACTER, ANYWHERE = range(5)
# Closing quotes and brackets stay with the sentence or clause they close.
_CLOSERS = re.escape("」』”’）)]»›〉》】〕")
_CLAUSE_SPACED_RE = re.compile(rf"(?:[,;:،؛—–…]|\.\.\.)[\"'{_CLOSERS}]*(?= )")
_CLAUSE_CJK_RE = re.compile(rf"[，、；：､][{_CLOSERS}]*")
# Sentence ends that pysbd's rules miss outside the languages that use them.
_MISSED_ENDS = {
    "cjk": (frozenset({"zh", "ja"}), re.compile(rf"[。！？｡][{_CLOSERS}]*")),
    "danda": (frozenset({"hi", "mr"}), re.compile(rf"[।॥][{_CLOSERS}]*(?= )")),
}
_CLOSERS_RE = re.compile(rf"(?: ?[{_CLOSERS}])+|[\"']+(?= |$)")
_UNSPACED = frozenset({Unit.HAN, Unit.KANA})
# pysbd's language for the dominant script when the request names none pysbd has.
_SCRIPT_LANGUAGE = {
    Unit.HAN: "zh",
    Unit.KANA: "ja",
    Unit.CYRILLIC: "ru",
    Unit.DEVANAGARI: "hi",
    Unit.ARABIC: "ar",
    Unit.GREEK: "el",
}


@dataclass(frozen=True)
class PlannedChunk:
    """One chunk: `text` is `normalised[start:end]`, `sep` what stood before it there.

    `estimate_s` is `estimate_seconds(text)`, except for a part of a song span that had to be
    cut, which is estimated as sung (more).
    """

    index: int
    text: str
    estimate_s: float
    start: int
    end: int
    sep: str


@dataclass(frozen=True)
class _Cut:
    """The left piece ends at `end`, the right one starts at `start` (end + 1 at a space)."""

    end: int
    start: int
    level: int


def join_chunks(chunks: Sequence[PlannedChunk]) -> str:
    """The normalised text back from its chunks: each chunk's text after its `sep`."""
    return "".join(chunk.sep + chunk.text for chunk in chunks)


def sentence_language(text: str, language: str | None = None) -> str:
    """The pysbd language to split `text` in: the given one, else the dominant script's, else English."""
    if language:
        code = re.split(r"[-_]", language.strip().lower())[0]
        if code in pysbd_languages():
            return code
    counts: dict[Unit, int] = {}
    for char in text:
        unit = unit_of(char)
        if unit is not None:
            counts[unit] = counts.get(unit, 0) + 1
    kana = counts.get(Unit.KANA, 0)
    if kana and kana * 10 >= counts.get(Unit.HAN, 0):  # kanji with kana around them: Japanese
        counts[Unit.KANA] = kana + counts.pop(Unit.HAN, 0)
    letters = {unit: n for unit, n in counts.items() if unit in _SCRIPT_LANGUAGE or unit is Unit.LATIN}
    if not letters:
        return "en"
    dominant = max(letters, key=lambda unit: (letters[unit], unit.value))
    return _SCRIPT_LANGUAGE.get(dominant, "en")


def plan_chunks(
    text: str,
    language: str | None = None,
    *,
    target_s: float = DEFAULT_TARGET_S,
    first_chunk_s: float | None = DEFAULT_FIRST_CHUNK_S,
    max_tokens: int = MAX_TEXT_TOKENS,
    count_tokens: Callable[[str], int] | None = None,
) -> list[PlannedChunk]:
    """Chunks of `text`, in order, each within `target_s` estimated and `max_tokens` tokens.

    `language`: an ISO 639-1 code (a preset's, e.g. `voices.language_of(voice)`), for the
    sentence rules. `first_chunk_s`: the first chunk's estimate limit (None, or not below
    `target_s`: no short first chunk); it is exceeded only by a first word, cue or fitting song
    longer than it. `count_tokens`: text -> token count (Bark's BERT tokenizer); without it
    the number of non-space characters, an upper bound of that count. A cue is never cut, so
    a `max_tokens` below a cue's count (Bark's 256 never is) lets its chunk exceed it.
    Raises InvalidTextError for empty text, InvalidParameterError for a bad setting.
    """
    _check_settings(target_s, first_chunk_s, max_tokens)
    normalised = normalize_whitespace(text)
    if not normalised:
        raise InvalidTextError("text is empty")
    plan = _Plan(normalised, sentence_language(normalised, language), target_s, max_tokens, count_tokens)
    spans: list[tuple[int, int]] = []
    start = 0
    if first_chunk_s is not None and first_chunk_s < target_s:
        first = plan.first_chunk(first_chunk_s)
        if plan.fits(*first, target_s):
            spans.append(first)
            start = plan.start_after(first[1])
    if start < len(normalised):
        spans += plan.pack(plan.pieces(start, len(normalised), target_s, hard=True), target_s)
    return [
        PlannedChunk(
            i, normalised[a:b], plan.estimate(a, b), a, b, normalised[spans[i - 1][1] : a] if i else ""
        )
        for i, (a, b) in enumerate(spans)
    ]


def _check_settings(target_s: float, first_chunk_s: float | None, max_tokens: int) -> None:
    if not target_s >= MIN_TARGET_S:
        raise InvalidParameterError(f"target_s must be >= {MIN_TARGET_S}, got {target_s}", param="target_s")
    if first_chunk_s is not None and not first_chunk_s > 0:
        raise InvalidParameterError(
            f"first_chunk_s must be > 0 or None, got {first_chunk_s}", param="first_chunk_s"
        )
    if max_tokens < 1:
        raise InvalidParameterError(f"max_tokens must be >= 1, got {max_tokens}", param="max_tokens")


class _Plan:
    """One normalised text's costs, token counts and cuts, with the splitting and packing steps."""

    def __init__(
        self,
        text: str,
        language: str,
        target_s: float,
        max_tokens: int,
        count_tokens: Callable[[str], int] | None,
    ) -> None:
        self.text = text
        self.max_tokens = max_tokens
        self.count_tokens = count_tokens
        self.cost_ms = np.concatenate([[0], np.cumsum(char_costs(text))])
        self.nonspace = np.concatenate([[0], np.cumsum([not c.isspace() for c in text])])
        self.protected = cue_spans(text) + [s for s in song_spans(text) if self.fits(*s, target_s)]
        cuts = [c for c in _cuts(text, language) if not _inside_any(c, self.protected)]
        # Per level, the cuts in order and their ends, for bisecting a piece's range.
        self.levels = [[c for c in cuts if c.level == level] for level in range(ANYWHERE)]
        self.level_ends = [[c.end for c in level] for level in self.levels]

    def estimate(self, start: int, end: int) -> float:
        return int(self.cost_ms[end] - self.cost_ms[start]) / 1000

    def tokens(self, start: int, end: int) -> int:
        if self.count_tokens is None:
            return int(self.nonspace[end] - self.nonspace[start])
        return self.count_tokens(self.text[start:end])

    def fits(self, start: int, end: int, limit_s: float) -> bool:
        return self.estimate(start, end) <= limit_s and self.tokens(start, end) <= self.max_tokens

    def start_after(self, end: int) -> int:
        """Where the next chunk starts after a chunk ending at `end` (past one space)."""
        return end + 1 if end < len(self.text) and self.text[end] == " " else end

    def first_sentences_over(self, limit_s: float) -> int:
        """The end of the first sentences whose estimate exceeds `limit_s` (all the text if none)."""
        for end in self.level_ends[SENTENCE]:
            if self.estimate(0, end) > limit_s:
                return end
        return len(self.text)

    def first_chunk(self, limit_s: float) -> tuple[int, int]:
        """The first chunk planned alone, within `limit_s`, from the first sentences that exceed it."""
        head = self.first_sentences_over(limit_s)
        return self.pack(self.pieces(0, head, limit_s, hard=False), limit_s)[0]

    def level_at(self, end: int) -> int:
        """The level of the cut that ends a piece at `end`."""
        for level, ends in enumerate(self.level_ends):
            i = bisect_left(ends, end)
            if i < len(ends) and ends[i] == end:
                return level
        return ANYWHERE

    def cuts_in(self, start: int, end: int, *, hard: bool) -> list[_Cut]:
        """The strongest-level cuts strictly inside [start, end); the emergency ones only if `hard`."""
        for cuts, ends in zip(self.levels, self.level_ends, strict=True):
            found = cuts[bisect_right(ends, start) : bisect_left(ends, end)]
            if found:
                return found
        if not hard:
            return []
        anywhere = (_Cut(i, i, ANYWHERE) for i in range(start + 1, end))
        return [
            c
            for c in anywhere
            if _may_cut_between(self.text[c.end - 1], self.text[c.end]) and not _inside_any(c, self.protected)
        ]

    def pieces(self, start: int, end: int, limit_s: float, *, hard: bool) -> list[tuple[int, int]]:
        """[start, end) cut at its strongest level, and each part that still does not fit again.

        `hard`: the limit is the target, so a part that fits no other way may be cut anywhere.
        """
        if self.fits(start, end, limit_s):
            return [(start, end)]
        cuts = self.cuts_in(start, end, hard=hard)
        if not cuts:
            return [(start, end)]  # a cue, a fitting song, or a word longer than a short first chunk
        out: list[tuple[int, int]] = []
        for cut in cuts:
            out += self.pieces(start, cut.end, limit_s, hard=hard)
            start = cut.start
        return out + self.pieces(start, end, limit_s, hard=hard)

    def pack(self, pieces: list[tuple[int, int]], limit_s: float) -> list[tuple[int, int]]:
        """Consecutive pieces merged greedily while they fit, each chunk ended at its strongest cut.

        A chunk that must close (the next piece does not fit) ends at the strongest cut level
        among its pieces' ends that still leaves it at least half of `limit_s`, the latest
        such end; where none does, it keeps every piece that fits. So chunks end at sentences,
        else clauses, where they can, without becoming short.
        """
        chunks = []
        i = 0
        while i < len(pieces):
            start, j = pieces[i][0], i + 1
            while j < len(pieces) and self.fits(start, pieces[j][1], limit_s):
                j += 1
            if j < len(pieces):
                ends = [
                    k for k in range(i + 1, j + 1) if self.estimate(start, pieces[k - 1][1]) >= limit_s / 2
                ]
                j = min(ends, key=lambda k: (self.level_at(pieces[k - 1][1]), -k), default=j)
            chunks.append((start, pieces[j - 1][1]))
            i = j
        return chunks


def _inside_any(cut: _Cut, spans: list[tuple[int, int]]) -> bool:
    return any(start < cut.end and cut.start < end for start, end in spans)


def _cuts(text: str, language: str) -> list[_Cut]:
    """Every place `text` may be cut (but anywhere), one cut per place at its strongest level."""
    found: dict[int, _Cut] = {}

    def add(end: int, level: int) -> None:
        if 0 < end < len(text) and (end not in found or found[end].level > level):
            found[end] = _Cut(end, end + 1 if text[end] == " " else end, level)

    for end in _sentence_ends(text, language):
        add(end, SENTENCE)
    for languages, pattern in _MISSED_ENDS.values():
        if language not in languages:
            for match in pattern.finditer(text):
                add(match.end(), SENTENCE)
    for pattern in (_CLAUSE_SPACED_RE, _CLAUSE_CJK_RE):
        for match in pattern.finditer(text):
            add(match.end(), CLAUSE)
    for a, b in cue_spans(text) + song_spans(text):  # a cue or song touching a word: its edge
        for edge in (a, b):
            if 0 < edge < len(text) and " " not in text[edge - 1 : edge + 1]:
                add(edge, SPACE)
    for i, char in enumerate(text):
        if char == " ":
            add(i, SPACE)
        elif i and unit_of(text[i - 1]) in _UNSPACED and unit_of(char) in _UNSPACED:
            add(i, CHARACTER)
    return [found[end] for end in sorted(found) if _clean_edge(text, found[end])]


def _may_cut_between(left: str, right: str) -> bool:
    """Not at a space, before a combining mark or a joiner, nor after a joiner: glyphs stay whole."""
    return not (
        " " in (left, right)
        or unicodedata.category(right)[0] == "M"
        or right in "\u200c\u200d\ufe0f"
        or left == "\u200d"
    )


def _clean_edge(text: str, cut: _Cut) -> bool:
    """A cut not at a space must not fall inside a word: after punctuation, beside CJK, a cue or ♪."""
    if cut.start > cut.end:
        return True
    left, right = text[cut.end - 1], text[cut.end]
    return (
        unicodedata.category(left)[0] == "P"
        or unit_of(left) in _UNSPACED
        or unit_of(right) in _UNSPACED
        or "♪" in (left, right)
        or right == "["  # a cue's start ("]" is punctuation)
    )


def _sentence_ends(text: str, language: str) -> list[int]:
    """Offsets where pysbd ends a sentence (its segments located in `text`, trailing spaces off)."""
    ends = []
    position = 0
    for segment in segmenter(language).segment(text):
        segment = segment.strip()
        found = text.find(segment, position) if segment else -1
        if found >= 0:
            position = found + len(segment)
            closers = _CLOSERS_RE.match(text, position)  # pysbd may end 「行。」 before its 」
            ends.append(closers.end() if closers else position)
    return ends
