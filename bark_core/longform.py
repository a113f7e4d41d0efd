"""A request's text chunks in flight: which may start, with which history, in which order out.

A request is planned into text chunks. Chunk 0 always goes first and alone, so that the
first audio comes as early as it can. Once it is generated (its fine codes exist), the rest
depends on the continuity mode (bark_core.params):

- `fixed` and `anchor`: chunks 1..N are independent of each other and all may start; each
  is a batch row of its own;
- `rolling`: chunk k starts once chunk k-1 is generated, one at a time.

Rows are shared fairly (`start_chunks`): each free row goes to the request with the fewest
rows in flight (the earliest admitted among equals), never more than `rows_per_request` to
one request. So a long request takes every row only while nobody else waits, and a request
admitted later gets the next free row.

Every chunk samples from its own generator, seeded from (request seed, chunk index), so its
tokens do not depend on when it ran or beside what. Chunks leave in order: a decoded chunk
waits until the ones before it have left.

A resumed request (`start_chunk` > 0, its earlier chunks' generations in `history`) starts at
that chunk as if the chunks before it had just been generated: same indices, same seeds, same
history, so on CPU its later chunks equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import InvalidParameterError
from .params import Continuity, GenerationParams, resolve_continuity
from .planner import PlannedChunk
from .quality import CheckResult, attempt_seed
from .types import AudioChunk, SynthesisRequest
from .voices import VoicePreset


def chunk_seed(seed: int, index: int) -> int:
    """Chunk 0 draws from the request's seed itself (a one-chunk request sounds as it always
    did); chunk k > 0 from a 64-bit seed that numpy's SeedSequence derives from (seed, k)."""
    if index == 0:
        return seed
    entropy = [seed % 2**64, index]  # SeedSequence takes no negative seed; torch wraps them so
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def chunk_generator(seed: int, index: int, device: str, attempt: int = 0) -> torch.Generator:
    """Attempt 0 draws from `chunk_seed` (a request that needs no retry sounds as it did
    before there were checks); a retry from bark_core.quality.attempt_seed(seed, index, a)."""
    gen_device = device if torch.device(device).type == "cuda" else "cpu"
    generator = torch.Generator(device=gen_device)
    generator.manual_seed(chunk_seed(seed, index) if attempt == 0 else attempt_seed(seed, index, attempt))
    return generator


@dataclass
class Attempt:
    """One finished attempt at a chunk: its checks, and (if it reached audio) its tokens and
    its decoded audio trimmed to the margin, kept in case every attempt fails."""

    results: list[CheckResult]
    audio: np.ndarray | None = None
    trimmed_s: float = 0.0
    tokens: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # semantic, coarse, fine


@dataclass
class Chunk:
    """One text chunk of one request, in flight through the stages."""

    owner: RequestState
    index: int
    text: str
    estimate_s: float
    history: VoicePreset | None
    generator: torch.Generator
    semantic: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    coarse: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.int64))
    fine: np.ndarray = field(default_factory=lambda: np.zeros((8, 0), np.int64))
    seconds: dict[str, float] = field(default_factory=dict)  # its share of each stage's run
    batch: dict[str, int] = field(default_factory=dict)  # rows in each stage's run
    attempt: int = 0  # retries so far (bark_core.quality)
    semantic_checks: list[CheckResult] = field(default_factory=list)  # this attempt's
    tried: list[Attempt] = field(default_factory=list)  # the attempts before this one

    @property
    def params(self) -> GenerationParams:
        return self.owner.request.params

    @property
    def request(self) -> SynthesisRequest:
        return self.owner.request

    def as_voice(self) -> VoicePreset:
        return VoicePreset(semantic=self.semantic, coarse=self.coarse, fine=self.fine)

    def retry(self, finished: Attempt) -> None:
        """Keep `finished` and start the next attempt from the semantic stage, with the
        generator of (seed, index, attempt)."""
        self.tried.append(finished)
        self.attempt += 1
        self.generator = chunk_generator(self.request.seed, self.index, self.owner.device, self.attempt)
        self.semantic_checks = []
        self.semantic = np.zeros(0, np.int64)
        self.coarse = np.zeros((2, 0), np.int64)
        self.fine = np.zeros((8, 0), np.int64)


class RequestState:
    """One request's chunks: started, generated, decoded and sent."""

    def __init__(
        self, index: int, request: SynthesisRequest, plan: Sequence[PlannedChunk], device: str
    ) -> None:
        self.index = index
        self.request = request
        self.plan = list(plan)
        self.continuity: Continuity = resolve_continuity(request.params.continuity, request.voice is not None)
        self.device = device
        self.started = 0  # chunks 0..started-1 have started
        self.in_flight = 0
        self.dropped = False
        self._generated: set[int] = set()
        # the history of the next chunk after the first (anchor: chunk 0's generation;
        # rolling: the latest non-empty generation; else the preset, or none)
        self._history = request.voice
        self._decoded: dict[int, AudioChunk] = {}
        self.sent = 0
        self._resume(request.start_chunk, request.history)

    def _resume(self, start: int, history: Mapping[int, VoicePreset]) -> None:
        """Chunks before `start` count as generated (with their kept generations) and sent."""
        if not 0 <= start <= self.n_chunks:
            raise InvalidParameterError(
                f"start_chunk must be in [0, {self.n_chunks}], got {start}", param="start_chunk"
            )
        needed = {"anchor": 0, "rolling": start - 1}.get(self.continuity)
        if start > 0 and needed is not None and needed not in history:
            raise InvalidParameterError(
                f"resuming at chunk {start} ({self.continuity}) needs chunk {needed}'s generation",
                param="history",
            )
        for index in sorted(i for i in history if i < start):
            self._keep_history(index, history[index])
        self._generated.update(range(start))
        self.started = self.sent = start

    @property
    def n_chunks(self) -> int:
        return len(self.plan)

    @property
    def finished(self) -> bool:
        return self.dropped or self.sent == self.n_chunks

    def can_start(self) -> bool:
        k = self.started
        if self.dropped or k >= self.n_chunks:
            return False
        if k == 0:
            return True
        return (k - 1 if self.continuity == "rolling" else 0) in self._generated

    def start_next(self) -> Chunk:
        k = self.started
        planned = self.plan[k]
        history = self.request.voice if k == 0 else self._history
        self.started += 1
        self.in_flight += 1
        generator = chunk_generator(self.request.seed, k, self.device)
        return Chunk(self, k, planned.text, planned.estimate_s, history, generator)

    def on_generated(self, chunk: Chunk) -> None:
        """Its fine codes exist: the chunks that wait for its history may start."""
        self._generated.add(chunk.index)
        self._keep_history(chunk.index, chunk.as_voice())

    def _keep_history(self, index: int, generation: VoicePreset) -> None:
        if generation.coarse.shape[1] == 0:  # nothing generated: no voice to pass on
            return
        if self.continuity == "rolling" or (self.continuity == "anchor" and index == 0):
            self._history = generation

    def on_decoded(self, audio_chunk: AudioChunk) -> list[AudioChunk]:
        """Keep a decoded chunk; return those that may leave now, in order."""
        self.in_flight -= 1
        self._decoded[audio_chunk.chunk_index] = audio_chunk
        out = []
        while self.sent in self._decoded:
            out.append(self._decoded.pop(self.sent))
            self.sent += 1
        return out

    def drop(self) -> None:
        self.dropped = True
        self._decoded.clear()


def start_chunks(states: Sequence[RequestState], free: int, rows_per_request: int) -> list[Chunk]:
    """Start up to `free` chunks, one row at a time to the request with the fewest in flight
    (the earliest among equals), at most `rows_per_request` each."""
    started: list[Chunk] = []
    for _ in range(free):
        open_ = [s for s in states if s.can_start() and s.in_flight < rows_per_request]
        if not open_:
            break
        state = min(open_, key=lambda s: (s.in_flight, s.index))
        started.append(state.start_next())
    return started
