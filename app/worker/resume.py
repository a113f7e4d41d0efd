"""Resume, not redo (issue 17): where a reclaimed job starts, and with which history.

A job whose worker died has some chunks in its output stream already, each with its full
generation kept beside it (ChunkGeneration). Its next delivery starts at the first chunk not
written, with those generations as the history of what follows (`anchor` needs chunk 0's,
`rolling` the previous chunk's), so the chunks after continue from exactly the audio the
client has, and the seqs continue where they stopped. On a GPU a re-run would not reproduce
the chunks sent (cuBLAS picks kernels by batch shape), so nothing here relies on one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bark_core.voices import VoicePreset

from ..queue.consumer import Written
from ..queue.wire import TOKEN_DTYPE, ChunkGeneration


@dataclass(frozen=True)
class ResumePoint:
    start_chunk: int = 0
    history: dict[int, VoicePreset] = field(default_factory=dict)
    samples: int = 0  # of the chunks before start_chunk, already with the client
    n_chunks: int | None = None  # the job's chunks, as its written chunks say (None: none yet)
    texts: tuple[str, ...] = ()  # of the chunks before start_chunk, as their worker planned them

    @property
    def finished(self) -> bool:
        """Every chunk was written; only the terminal event is missing."""
        return self.n_chunks is not None and self.start_chunk >= self.n_chunks


def as_voice(gen: ChunkGeneration) -> VoicePreset:
    def tokens(raw: bytes, rows: int | None) -> np.ndarray:
        array = np.frombuffer(raw, dtype=TOKEN_DTYPE).astype(np.int64)
        return array if rows is None else array.reshape(rows, -1)

    return VoicePreset(
        semantic=tokens(gen.semantic, None), coarse=tokens(gen.coarse, 2), fine=tokens(gen.fine, 8)
    )


def resume_point(written: Written) -> ResumePoint:
    """Start after the chunks written whose generations are all kept (a stream written by a
    version that kept none starts at 0 again: the API skips the seqs its client has)."""
    start = 0
    while start < written.next_seq and start in written.generations:
        start += 1
    history = {seq: as_voice(written.generations[seq]) for seq in range(start)}
    samples = sum(written.samples[seq] for seq in range(start))
    texts = tuple(written.texts.get(seq, "") for seq in range(start))
    return ResumePoint(start, history, samples, written.n_chunks, texts)


def plan_mismatch(point: ResumePoint, planned: Sequence[str]) -> str | None:
    """Why this worker cannot continue the chunks already written, or None. Resuming takes
    chunk indices to mean the same text; a worker whose planner settings differ (a rolling
    update of BARK_CHUNK_TARGET_S, say) splits the text elsewhere, and continuing would skip
    or repeat words."""
    if point.start_chunk == 0:
        return None
    if point.n_chunks is not None and point.n_chunks != len(planned):
        return f"this worker plans {len(planned)} chunks, the job's first run planned {point.n_chunks}"
    for seq, text in enumerate(point.texts):
        if text and (seq >= len(planned) or planned[seq] != text):
            return f"chunk {seq} was planned as {text!r}, this worker plans it differently"
    return None
