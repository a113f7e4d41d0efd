"""The CPU fast path is chosen by measurement: `auto` packs the linears only where packed
decode-step linears were measured faster on this machine. Timings are injected here: what
is tested is the choice, not the speed (that is benchmarks/' job)."""

from __future__ import annotations

import math

import pytest
import torch

from bark_core.modules import (
    PackedLinear,
    choose_packing,
    cpu_packing_available,
    measure_linears,
    pack_cpu_models,
    quantize_int8,
)

pytestmark = pytest.mark.skipif(not cpu_packing_available(), reason="this torch has no oneDNN packing")


@pytest.fixture
def plain(tiny_checkpoint):  # type: ignore[no-untyped-def]
    from bark_core.pipeline import BarkPipeline

    return BarkPipeline.load(str(tiny_checkpoint), pack=False)


def _never() -> tuple[float, float]:
    raise AssertionError("measured, though the mode decides alone")


def _packed(model: torch.nn.Module) -> int:
    return sum(isinstance(m, PackedLinear) for m in model.modules())


@pytest.mark.parametrize(
    ("plain_ms", "packed_ms", "pack"),
    [(10.0, 5.0, True), (5.0, 10.0, False), (10.0, 9.7, False), (10.0, 9.4, True)],
)
def test_auto_packs_only_when_measured_faster_by_the_margin(plain, plain_ms, packed_ms, pack) -> None:  # type: ignore[no-untyped-def]
    choice = choose_packing("auto", plain.coarse, lambda: (plain_ms, packed_ms))
    assert choice.pack is pack
    assert (choice.plain_ms, choice.packed_ms) == (plain_ms, packed_ms)
    assert f"plain {plain_ms:.3f} ms, packed {packed_ms:.3f} ms" in choice.describe()


def test_on_and_off_decide_without_measuring(plain) -> None:  # type: ignore[no-untyped-def]
    assert choose_packing("on", plain.coarse, _never).pack
    assert not choose_packing("off", plain.coarse, _never).pack
    with pytest.raises(ValueError, match="pack mode"):
        choose_packing("sometimes", plain.coarse, _never)  # type: ignore[arg-type]


def test_only_fp32_cpu_weights_are_packed_even_when_on(plain) -> None:  # type: ignore[no-untyped-def]
    plain.coarse.to(torch.bfloat16)
    assert not choose_packing("on", plain.coarse, _never).pack
    assert not choose_packing("auto", plain.coarse, _never).pack
    quantize_int8(plain.fine)
    assert not choose_packing("on", plain.fine, _never).pack


@pytest.mark.parametrize(("timings", "packed"), [((10.0, 5.0), True), ((5.0, 10.0), False)])
def test_pack_cpu_models_packs_all_three_as_chosen(plain, timings, packed) -> None:  # type: ignore[no-untyped-def]
    choice = pack_cpu_models("auto", plain.semantic, plain.coarse, plain.fine, lambda: timings)
    assert choice.pack is packed
    n_layers = len(plain.coarse.layers)
    expected = (4 * n_layers + 1, 4 * n_layers, 4 * len(plain.fine.layers)) if packed else (0, 0, 0)
    assert (_packed(plain.semantic), _packed(plain.coarse), _packed(plain.fine)) == expected


def test_the_measurement_runs_on_the_model_and_gives_two_figures(plain) -> None:  # type: ignore[no-untyped-def]
    plain_ms, packed_ms = measure_linears(plain.coarse, repeats=3)
    assert all(math.isfinite(t) and t > 0 for t in (plain_ms, packed_ms))
    assert _packed(plain.coarse) == 0  # measuring leaves the model as it was
    choice = choose_packing("auto", plain.coarse)
    assert choice.plain_ms is not None and choice.packed_ms is not None
