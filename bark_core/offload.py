"""Stage offload on CUDA: an idle stage rests in host memory, the GPU holds one stage at a time.

Each stage's weights are copied once, at load, into pinned host memory, so moving a stage to
the GPU is a set of non-blocking copies that overlap with the host's work. Inference never
changes weights, so sending a stage back copies nothing: its parameters point at the pinned
copies again, and the GPU blocks they held stay with the caching allocator for the next stage
(no `empty_cache` per use, which would make every move allocate afresh).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


def _tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    # tied weights appear once (named_parameters drops duplicates), and pointing the shared
    # Parameter at new data moves every use of it
    yield from module.named_parameters()
    yield from module.named_buffers()


class OffloadedStage:
    """One stage's weights: resting on the host (`host`), or on `device` for its turn."""

    def __init__(self, module: nn.Module, pin: bool = True) -> None:
        self.module = module
        self.host = {name: _host_copy(t, pin) for name, t in _tensors(module)}
        self._point(self.host)

    def to_device(self, device: str | torch.device) -> None:
        self._point({name: t.to(device, non_blocking=True) for name, t in self.host.items()})

    def to_host(self) -> None:
        self._point(self.host)

    def _point(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, tensor in _tensors(self.module):
            tensor.data = tensors[name]


def _host_copy(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    host = tensor.detach().to("cpu")
    return host.pin_memory() if pin else host
