"""What accelerate's offload hook costs per forward call, once its model is on its device.

transformers' BarkModel.enable_cpu_offload puts `cpu_offload_with_hook` on each sub-model; the
hook's `pre_forward` runs on every call of the model's forward, which bark's stages make once
per generated token. This times a tiny CausalGPT's decode step with the hook against the same
step without it (the model's own work is small, so the difference is the hook's Python).
CPU only: the hook's cost is host time, the same on a GPU host's CPU.

    .venv/bin/python -m benchmarks.offload_hook_bench
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.common import best_of

TINY = {
    "block_size": 64,
    "input_vocab_size": 64,
    "output_vocab_size": 64,
    "num_layers": 1,
    "num_heads": 2,
    "hidden_size": 64,
    "bias": False,
}


def hook_cost_us(inner: int = 200) -> tuple[float, float]:
    """(plain step, hooked step) in microseconds, best of 9 timings of `inner` steps each."""
    import torch
    from accelerate import cpu_offload_with_hook

    from bark_core.modules import CausalGPT, GPTShape

    shape = GPTShape(**TINY)  # type: ignore[arg-type]
    tokens = torch.zeros(1, 1, dtype=torch.long)
    pos = torch.full((1, 1), 10)

    def stepper(model):  # type: ignore[no-untyped-def]
        cache = model.new_cache(1, 16)

        def step() -> None:
            cache.length = 10
            with torch.inference_mode():
                model(model.input_embeds_layer(tokens), pos, cache)

        return step

    plain = stepper(CausalGPT(shape).eval())
    hooked_model, _hook = cpu_offload_with_hook(CausalGPT(shape).eval(), execution_device="cpu")
    hooked = stepper(hooked_model)
    return best_of(plain, repeat=9, inner=inner) * 1e6, best_of(hooked, repeat=9, inner=inner) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import accelerate
    import torch

    torch.set_num_threads(args.threads)
    for _ in range(args.rounds):
        plain, hooked = hook_cost_us()
        print(
            f"accelerate {accelerate.__version__}: step {plain:.0f} us plain, {hooked:.0f} us hooked: "
            f"the hook costs {hooked - plain:.0f} us per forward"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
