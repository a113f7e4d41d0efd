"""Stage offload's bookkeeping, on the CPU (pinning and the GPU move itself run only on CUDA)."""

from __future__ import annotations

import torch
from torch import nn

from bark_core.offload import OffloadedStage


def _tied() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight  # tied, as Bark's fine heads and embeddings are
    model.register_buffer("mask", torch.tril(torch.ones(3, 3)))
    return model


def test_a_round_trip_keeps_weights_ties_and_outputs() -> None:
    model = _tied()
    x = torch.tensor([1, 2, 3])
    before = model(x).detach().clone()
    stage = OffloadedStage(model, pin=False)
    stage.to_device("cpu")
    assert torch.equal(model(x), before)
    stage.to_host()
    assert torch.equal(model(x), before)
    assert model[1].weight is model[0].weight  # still one tensor for both uses
    # back home copies nothing: the parameters point at the host copies made once
    assert model[0].weight.data_ptr() == stage.host["0.weight"].data_ptr()
    assert model.mask.data_ptr() == stage.host["mask"].data_ptr()
