"""Which stage runs next when requests join a batch that is already running.

Each work item (one text chunk of a request; bark_core.longform says which chunks are in
flight) waits in front of one stage. The pipeline
runs one stage at a time, over everything waiting in front of it, as one batch. Without
arrivals every item moves in lockstep and this is plain round-by-round batching.

With arrivals the choice matters: a request that joins while the others are already at the
coarse stage should catch up with them there, so that the coarse and fine stages run once for
all of them. So:

- the codec goes first whenever something waits for it (it decodes row by row, so waiting
  batches nothing, and its audio is the first byte a client is waiting for);
- otherwise the latest stage with work runs (the oldest requests finish first), unless the
  stage just before it also has work: then that stage runs first, so its items join the later
  ones, and the later items are marked as held;
- held items are never held again at the same stage. A request is therefore delayed by at most
  one run of the stage before it, per stage, and a stream of arrivals cannot starve it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

STAGES = ("semantic", "coarse", "fine", "codec")
BATCHED = STAGES[:-1]

W = TypeVar("W")


@dataclass
class _Slot(Generic[W]):
    item: W
    held: bool = False


class StageQueues(Generic[W]):
    def __init__(self) -> None:
        self._waiting: dict[str, list[_Slot[W]]] = {stage: [] for stage in STAGES}

    def put(self, stage: str, item: W) -> None:
        self._waiting[stage].append(_Slot(item))

    def remove(self, item: W) -> None:
        for slots in self._waiting.values():
            slots[:] = [s for s in slots if s.item is not item]

    def items(self) -> list[W]:
        return [s.item for slots in self._waiting.values() for s in slots]

    def __len__(self) -> int:
        return sum(len(slots) for slots in self._waiting.values())

    def take(self) -> tuple[str, list[W]] | None:
        """The stage to run next and everything waiting for it (now no longer waiting)."""
        stage = self._pick()
        if stage is None:
            return None
        batch, self._waiting[stage] = self._waiting[stage], []
        return stage, [s.item for s in batch]

    def _pick(self) -> str | None:
        if self._waiting["codec"]:
            return "codec"
        busy = [stage for stage in BATCHED if self._waiting[stage]]
        if not busy:
            return None
        latest = busy[-1]
        before = BATCHED[BATCHED.index(latest) - 1] if latest != BATCHED[0] else None
        later = self._waiting[latest]
        if before is not None and self._waiting[before] and not any(s.held for s in later):
            for s in later:
                s.held = True
            return before
        return latest
