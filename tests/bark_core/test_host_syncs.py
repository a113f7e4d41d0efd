"""Each decode step reads back from the device at most once for all rows (on a GPU every read
is a sync that stalls the kernel queue). Counted on CPU: the aten ops that read a value back
(`_local_scalar_dense`: item/int/float/bool, also inside torch.multinomial; `nonzero`: boolean
indexing) seen by the profiler, plus the Python-level copies out (`tolist`, `cpu`; `numpy`
only ever follows `cpu`, as it cannot read a device tensor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from bark_core import stages

READ_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select")


class _HostReads:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch, self.copies, self.uploads = monkeypatch, 0, 0

    def __enter__(self) -> _HostReads:
        for name in ("tolist", "cpu"):
            self._count(torch.Tensor, name, "copies")
        self._count(torch, "tensor", "uploads")  # host lists sent to the device
        self.prof = profile(activities=[ProfilerActivity.CPU])
        self.prof.__enter__()
        return self

    def _count(self, owner: object, name: str, counter: str) -> None:
        original = getattr(owner, name)

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            setattr(self, counter, getattr(self, counter) + 1)
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, counted)

    def __exit__(self, *exc: object) -> None:
        self.prof.__exit__(None, None, None)
        self.monkeypatch.undo()
        self.reads = sum(1 for e in self.prof.events() if e.name in READ_OPS)

    @property
    def total(self) -> int:
        return self.reads + self.copies


def _controls(n: int) -> list[stages.RowControl]:
    # greedy, the defaults, and both filters: every kind of row in one batch
    kinds = [(0.0, None, None), (0.7, None, None), (0.7, 20, 0.8)]
    return [
        stages.RowControl(temp=t, top_k=k, top_p=p, generator=torch.Generator().manual_seed(i))
        for i, (t, k, p) in enumerate(kinds[i % 3] for i in range(n))
    ]


def test_a_semantic_step_reads_back_once_for_all_rows(pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    text = [pipeline.encode_text("Hello there.")] * 3
    steps = 20
    with _HostReads(monkeypatch) as reads:
        out = stages.generate_semantic(
            pipeline.semantic, text, [None] * 3, _controls(3), [0.2] * 3, [steps] * 3
        )
    assert [len(t) for t in out] == [steps] * 3
    # one read per step (the last step's ends every row); uploads only at the start
    assert reads.total == steps
    assert reads.uploads <= 6


def test_a_coarse_window_reads_back_once(pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    semantic = [np.random.default_rng(0).integers(0, 10_000, n) for n in (60, 40, 50)]  # 180/120/150 steps
    with _HostReads(monkeypatch) as reads:
        out = stages.generate_coarse(pipeline.coarse, semantic, [None] * 3, _controls(3))
    assert [c.shape[1] for c in out] == [90, 60, 75]
    windows = 3
    assert reads.total == windows  # one read of each window's tokens, none per step
    # per window: the sampling settings; rows leaving mid-window: their indices
    assert reads.uploads <= 6 * windows + 4


def test_the_fine_stage_reads_back_only_its_result(pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    coarse = [np.random.default_rng(i).integers(0, 1024, (2, n)) for i, n in enumerate((1300, 200))]
    with _HostReads(monkeypatch) as reads:
        out = stages.generate_fine(pipeline.fine, coarse, [None] * 2, _controls(2))
    assert [f.shape for f in out] == [(8, 1300), (8, 200)]
    assert reads.total == 2  # each row's codes, once at the end
