"""Pipeline benchmark: transformers' BarkModel.generate against bark_core, side by side.

Both sides get the same checkpoint (the `small` random one: bark-small's shapes), text, voice
and semantic length. The random model never emits EOS, so greedy decoding with min_eos_p None
runs both to the same cap (`--seconds` of audio: 49.9 semantic tokens per second). Each mode
runs in its own fresh process, so its peak RSS is its own.

    .venv/bin/python -m benchmarks.pipeline_bench                  # all default modes
    .venv/bin/python -m benchmarks.pipeline_bench --modes ref-fp32,core-fp32 --seconds 2
    .venv/bin/python -m benchmarks.pipeline_bench --device cuda \
        --modes ref-fp16,core-fp16,ref-fp16-offload,core-fp16-offload

Modes: ref-<dtype> is transformers, core-<dtype> is bark_core; dtypes fp32, bf16, int8
(bark_core only: dynamic int8 linears), fp32plain (bark_core only: fp32 without the oneDNN
weight packing, to show what it contributes), fp16 (CUDA only). A `-offload` suffix (CUDA only)
keeps idle stages on the CPU: transformers' `enable_cpu_offload` (accelerate hooks) or
bark_core's own stage offload. An `-eager` suffix (bark_core on CUDA) turns its CUDA graphs
off: each decode step launches its kernels one by one, on a cache that grows.

On a GPU every mode gets an untimed warm-up run first (cuBLAS/cuDNN set-up, kernel choice and
the caching allocator's first segments are not the model's cost), each timed region is closed
by torch.cuda.synchronize, and peak memory is reset after the warm-up: allocated and reserved.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks.common import (
    checkpoint,
    cuda_sync,
    gpu_memory,
    machine,
    measure_machine,
    peak_rss_mib,
    reset_gpu_peak,
    table,
    write_json,
)

TEXT = "Hello there, my dog is cute."
STAGES = ("semantic", "coarse", "fine", "codec")
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# bark_core's modes: `fp32` packs the CPU linears (oneDNN), `fp32plain` keeps aten's
CORE_PRECISIONS = {**TORCH_DTYPES, "int8": "int8", "fp32plain": "float32"}


@dataclass(frozen=True)
class Mode:
    """`core-fp16-offload-eager` -> side ref (transformers) or core (bark_core), dtype,
    offload, CUDA graphs off (core only)."""

    side: str
    dtype: str
    offload: bool = False
    eager: bool = False

    @classmethod
    def parse(cls, name: str) -> Mode:
        side, dtype, *rest = name.split("-")
        flags = ["offload", "eager"] if side == "core" else ["offload"]
        if side not in ("ref", "core") or rest != [f for f in flags if f in rest]:
            raise ValueError(f"mode {name!r}: expected ref|core-<dtype>[-offload][-eager (core)]")
        return cls(side, dtype, "offload" in rest, "eager" in rest)

    @property
    def variant(self) -> str:
        """What ref and core modes are compared on: the dtype's number format and offload."""
        return number_format(self.dtype) + ("-offload" if self.offload else "")


def number_format(dtype: str) -> str:
    """The weights' number format of a mode's dtype (fp32plain is fp32, laid out by aten)."""
    return "fp32" if dtype == "fp32plain" else dtype


def load_core(ckpt: str, dtype: str, device: str = "cpu", offload: bool = False, eager: bool = False):  # type: ignore[no-untyped-def]
    from bark_core.pipeline import BarkPipeline

    return BarkPipeline.load(
        ckpt,
        device=device,
        dtype=CORE_PRECISIONS[dtype],
        offload=offload,
        pack=dtype != "fp32plain",
        cuda_graphs=not eager,
    )


# ----------------------------------------------------------------------------- one mode, in a child


def _sync(device: str) -> None:
    sync = cuda_sync(device)
    if sync:
        sync()


def _peak_memory(device: str) -> dict:
    return {"peak_rss_mib": peak_rss_mib(), **gpu_memory(device)}


def _timed_run(device: str, warmup: int, run, *dicts: dict):  # type: ignore[no-untyped-def]
    """`warmup` untimed calls of `run`, then one timed: (result, wall s, process CPU s). The
    stage timers' dicts are emptied after the warm-up, and the GPU's peak memory reset."""
    for _ in range(warmup):
        run()
    for d in dicts:
        d.clear()
    reset_gpu_peak(device)
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    out = run()
    _sync(device)
    return out, time.perf_counter() - t, time.process_time() - c


def _timer(device: str, wall: dict, cpu: dict, outputs: dict):  # type: ignore[no-untyped-def]
    """Wraps a stage function to add its wall and process CPU seconds (all threads) up."""

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            out = fn(*args, **kwargs)
            _sync(device)
            wall[name] = wall.get(name, 0.0) + time.perf_counter() - t
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - c
            outputs[name] = out
            return out

        return wrapper

    return timed


def run_reference(
    mode: Mode, ckpt: str, device: str, voice: str | None, n_semantic: int, warmup: int
) -> dict:
    """transformers' BarkModel.generate, each sub-model's generate timed by a wrapper."""
    import torch
    from transformers import BarkModel, BarkProcessor

    t0 = time.perf_counter()
    torch_dtype = getattr(torch, TORCH_DTYPES[mode.dtype])
    model = BarkModel.from_pretrained(ckpt, torch_dtype=torch_dtype).eval()
    if mode.offload:
        model.enable_cpu_offload()  # accelerate's cpu_offload_with_hook on each sub-model
    else:
        model = model.to(device)
    processor = BarkProcessor.from_pretrained(ckpt)
    load_s = time.perf_counter() - t0
    # `voice` is one of the checkpoint's own preset ids, never a caller's path
    inputs = processor(TEXT, voice_preset=voice).to(device)
    timings: dict[str, float] = {}
    outputs: dict[str, object] = {}

    cpu: dict[str, float] = {}
    timed = _timer(device, timings, cpu, outputs)
    model.semantic.generate = timed("semantic", model.semantic.generate)
    model.coarse_acoustics.generate = timed("coarse", model.coarse_acoustics.generate)
    model.fine_acoustics.generate = timed("fine", model.fine_acoustics.generate)
    model.codec_decode = timed("codec", model.codec_decode)

    @torch.inference_mode()
    def generate():  # type: ignore[no-untyped-def]
        return model.generate(**inputs, semantic_max_new_tokens=n_semantic, min_eos_p=None, do_sample=False)

    audio, total, cpu_total = _timed_run(device, warmup, generate, timings, cpu, outputs)
    semantic = outputs["semantic"][0].cpu().numpy()  # type: ignore[index]
    fine = outputs["fine"][0].cpu().numpy()  # type: ignore[index]
    return {
        "load_s": load_s,
        "total_s": total,
        "cpu_s": cpu_total,
        "stage_s": timings,
        "stage_cpu_s": cpu,
        "audio_s": audio.shape[-1] / 24_000,
        "semantic": semantic.tolist(),
        "fine": fine.tolist(),
        **_peak_memory(device),
    }


def run_core(mode: Mode, ckpt: str, device: str, voice: str | None, n_semantic: int, warmup: int) -> dict:
    """bark_core's pipeline, one request, greedy; stage times from the chunk it yields."""
    import torch

    from bark_core import stages
    from bark_core.params import GenerationParams
    from bark_core.types import SynthesisRequest

    t0 = time.perf_counter()
    pipe = load_core(ckpt, mode.dtype, device, mode.offload, mode.eager)
    load_s = time.perf_counter() - t0
    preset = pipe.voices.get(voice) if voice else None
    params = GenerationParams.greedy(max_duration_s=n_semantic / 49.9)
    request = SynthesisRequest(TEXT, preset, params, seed=0)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    timed = _timer(device, timings, cpu, {})
    for name in ("semantic", "coarse", "fine"):
        fn = f"generate_{name}"
        setattr(stages, fn, timed(name, getattr(stages, fn)))
    pipe.decode = timed("codec", pipe.decode)  # type: ignore[method-assign]

    @torch.inference_mode()
    def generate():  # type: ignore[no-untyped-def]
        [chunk] = list(pipe.stream([request]))
        return chunk

    chunk, total, cpu_total = _timed_run(device, warmup, generate, timings, cpu)
    return {
        "load_s": load_s,
        "total_s": total,
        "cpu_s": cpu_total,
        "stage_s": timings,
        "stage_cpu_s": cpu,
        "audio_s": chunk.duration_s,
        "semantic": chunk.semantic.tolist(),
        "coarse": chunk.coarse.tolist(),
        "fine": chunk.fine.tolist(),
        # decode steps captured as CUDA graphs and replays, warm-up run included
        "cuda_graphs": None if pipe.graphs is None else [pipe.graphs.captured, pipe.graphs.replayed],
        **_peak_memory(device),
    }


def run_mode(name: str, ckpt: str, device: str, voice: str | None, n_semantic: int, warmup: int) -> dict:
    mode = Mode.parse(name)
    fn = run_reference if mode.side == "ref" else run_core
    return fn(mode, ckpt, device, voice, n_semantic, warmup)


# ----------------------------------------------------------------------------- agreement


def _causal_logits_all(model, embeds, positions):  # type: ignore[no-untyped-def]
    """Every position's logits (B, T, V) of one causal forward over `embeds`."""
    cache = model.new_cache(embeds.shape[0], embeds.shape[1])
    x = embeds + model.position_embeds_layer(positions)
    for i, block in enumerate(model.layers):
        x = block(x, None, cache, i)
    return model.lm_head(model.layernorm_final(x))


def _stage_argmaxes(pipe, fp32_run: dict, voice: str | None) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Top-1 of each stage at each generated position, teacher-forced on fp32's tokens."""
    import torch

    from bark_core import stages
    from bark_core.constants import (
        COARSE_WINDOW,
        CODEBOOK_SIZE,
        SEMANTIC_INFER_TOKEN,
        SEMANTIC_PAD_TOKEN,
        SEMANTIC_VOCAB_SIZE,
        TEXT_PAD_TOKEN,
    )

    preset = pipe.voices.get(voice) if voice else None
    sem = np.asarray(fp32_run["semantic"], dtype=np.int64)
    coarse = np.asarray(fp32_run["coarse"], dtype=np.int64)
    fine = np.asarray(fp32_run["fine"], dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    device = pipe.semantic.device
    with torch.inference_mode():
        # semantic: the prefix (text + history, infer token), then the generated tokens
        model = pipe.semantic
        text = stages._pad_right(pipe.encode_text(TEXT)[:256], 256, TEXT_PAD_TOKEN)
        hist = (
            stages._pad_right(preset.semantic[-256:], 256, SEMANTIC_PAD_TOKEN)
            if preset
            else np.full(256, SEMANTIC_PAD_TOKEN)
        )
        emb = model.input_embeds_layer
        tt = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))[None].to(device)  # noqa: E731
        x = torch.cat([emb(tt(text)) + emb(tt(hist)), emb(tt([SEMANTIC_INFER_TOKEN])), emb(tt(sem[:-1]))], 1)
        logits = _causal_logits_all(model, x, torch.arange(x.shape[1], device=device)[None])[0, 256:]
        out["semantic"] = logits[:, : SEMANTIC_VOCAB_SIZE + 1].float().argmax(-1).cpu().numpy()
        # coarse: each 60-step window's context plus the tokens generated in it
        model = pipe.coarse
        sem_hist, coarse_hist = (
            stages.coarse_histories(preset.semantic, preset.coarse)
            if preset
            else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        )
        gen_flat = stages._flatten_codebooks(coarse)
        row = stages._CoarseRow(0, np.concatenate([sem_hist, sem]), list(coarse_hist), len(sem_hist), 0, 0)
        picks = []
        for n_step in range(0, len(gen_flat), COARSE_WINDOW):
            row.coarse = list(coarse_hist) + list(gen_flat[:n_step])
            window = stages._coarse_window(row, n_step)
            new = gen_flat[n_step : n_step + COARSE_WINDOW]
            ids = tt(np.concatenate([window, new[:-1]]))
            positions = torch.arange(ids.shape[1], device=device)[None]
            logits = _causal_logits_all(model, model.input_embeds_layer(ids), positions)
            logits = logits[0, len(window) - 1 :].float().cpu()
            for j in range(len(new)):
                start = SEMANTIC_VOCAB_SIZE + (0 if (n_step + j) % 2 == 0 else CODEBOOK_SIZE)
                picks.append(int(logits[j, start : start + CODEBOOK_SIZE].argmax()))
        out["coarse"] = np.array(picks)
        # fine: each predicted codebook from fp32's codes of the codebooks below it
        model = pipe.fine
        codes = fine
        if preset is not None:
            codes = np.hstack([preset.fine[:, -512:], fine])
        n_hist = codes.shape[1] - fine.shape[1]
        padded = np.hstack([codes, np.full((8, max(0, 1024 - codes.shape[1])), CODEBOOK_SIZE)])
        window = torch.from_numpy(padded[:, :1024].T.copy())[None].to(device)
        picks_f = []
        for cb in range(2, 8):
            logits = model(cb, window)[0, n_hist : n_hist + fine.shape[1], :CODEBOOK_SIZE]
            picks_f.append(logits.float().argmax(-1).cpu().numpy())
        out["fine"] = np.stack(picks_f)
    return out


def run_agreement(
    ckpt: str, modes: list[str], fp32_run: dict, voice: str | None, device: str = "cpu"
) -> dict:
    """Teacher-forced top-1 agreement of each mode with fp32 on fp32's own tokens, all on
    `device` (on a GPU: fp16/bf16 against the GPU's own fp32)."""
    base = _stage_argmaxes(load_core(ckpt, "fp32", device), fp32_run, voice)
    result: dict[str, dict] = {}
    for mode in modes:
        dtype = Mode.parse(mode).dtype
        t = time.perf_counter()
        pipe = load_core(ckpt, dtype, device)
        other = _stage_argmaxes(pipe, fp32_run, voice)
        result[mode] = {
            stage: float(np.mean(base[stage] == other[stage])) for stage in ("semantic", "coarse", "fine")
        }
        result[mode]["positions"] = {stage: int(base[stage].size) for stage in base}
        result[mode]["seconds"] = time.perf_counter() - t
    # the fp32 model's teacher-forced top-1 should be its own greedy tokens
    result["fp32_self_check"] = {
        "semantic": float(np.mean(base["semantic"][: len(fp32_run["semantic"])] == fp32_run["semantic"])),
    }
    return result


# ----------------------------------------------------------------------------- batching


def run_batching(ckpt: str, dtypes: list[str], device: str, contexts: list[int], batches: list[int]) -> list:
    """One decode step of the coarse GPT at each batch size, with a cache filled to `context`."""
    import torch

    from bark_core.constants import CODEBOOK_SIZE, SEMANTIC_VOCAB_SIZE

    codebook = slice(SEMANTIC_VOCAB_SIZE, SEMANTIC_VOCAB_SIZE + CODEBOOK_SIZE)

    from benchmarks.common import best_of

    rows = []
    for dtype in dtypes:
        model = load_core(ckpt, dtype, device).coarse
        for context in contexts:
            base = None
            for batch in batches:
                cache = model.new_cache(batch, context + 1)
                cache.k.normal_()
                cache.v.normal_()
                tokens = torch.zeros(batch, 1, dtype=torch.long, device=device)
                pos = torch.full((1, 1), context, device=device)

                def step(model=model, cache=cache, tokens=tokens, pos=pos, context=context) -> None:  # type: ignore[no-untyped-def]
                    cache.length = context
                    with torch.inference_mode():  # one codebook's logits, as the coarse stage asks
                        model(model.input_embeds_layer(tokens), pos, cache, vocab=codebook).argmax(-1)

                sync = cuda_sync(device)
                # a launch-bound GPU step is ~2 ms: ten in a row, so one sync is not a tenth of it
                t = best_of(step, repeat=5, sync=sync, inner=10 if sync else 1)
                tps = batch / t
                base = base or tps
                rows.append(
                    {
                        "dtype": dtype,
                        "context": context,
                        "batch": batch,
                        "ms_per_step": t * 1e3,
                        "tokens_per_s": tps,
                        "vs_batch_1": tps / base,
                    }
                )
                print(f"  batching {dtype} ctx {context} batch {batch}: {t * 1e3:.1f} ms/step", flush=True)
    return rows


# ----------------------------------------------------------------------------- floors


def _linear_params(model) -> int:  # type: ignore[no-untyped-def]
    """Weights read per token: every linear layer (incl. the head), embeddings excluded."""
    s = model.shape
    per_layer = s.hidden_size * (3 + 1 + 4 + 4) * s.hidden_size
    return s.num_layers * per_layer + s.hidden_size * s.output_vocab_size


def floors(ckpt: str, dtype: str, run: dict, machine_speed: dict, voice: str | None) -> dict:
    """Seconds each stage cannot go below on this machine for the work the exact algorithm
    needs: decode steps read all weights (and the KV cache) once; prefills and the fine model
    are GEMMs at the measured GEMM rate."""
    from transformers import BarkConfig

    from bark_core import stages
    from bark_core.constants import COARSE_WINDOW
    from bark_core.modules import GPTShape
    from bark_core.voices import VoiceLibrary

    cfg = BarkConfig.from_pretrained(ckpt)
    dtype = number_format(dtype)
    nbytes = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}[dtype]
    kv_bytes = 4 if dtype in ("fp32", "int8") else 2
    flops = machine_speed.get(f"gemm_{dtype}_GFLOPs", machine_speed["gemm_fp32_GFLOPs"]) * 1e9
    bw = machine_speed["bandwidth_GBps"] * 1e9

    class _M:
        def __init__(self, sub) -> None:  # type: ignore[no-untyped-def]
            self.shape = GPTShape.from_config(sub)

    sem_m, co_m, fi_m = (
        _M(cfg.semantic_config),
        _M(cfg.coarse_acoustics_config),
        _M(cfg.fine_acoustics_config),
    )
    C, L = sem_m.shape.hidden_size, sem_m.shape.num_layers

    def decode_step(m: _M, context: int) -> float:
        return (_linear_params(m) * nbytes + 2 * L * context * C * kv_bytes) / bw

    def prefill(m: _M, tokens: int) -> float:
        return (2 * _linear_params(m) * tokens + 4 * L * tokens * tokens * C / 2) / flops

    n_sem = len(run["semantic"])
    out = {"semantic": prefill(sem_m, 257) + sum(decode_step(sem_m, 257 + i) for i in range(n_sem))}
    # coarse: the windows the exact algorithm sees; a window that extends the previous one
    # needs no prefill of what is already in the cache
    preset = VoiceLibrary.from_checkpoint(Path(ckpt)).get(voice) if voice else None
    sem_hist, coarse_hist = (
        stages.coarse_histories(preset.semantic, preset.coarse)
        if preset
        else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    )
    # transformers' coarse codes are its fine output's first two codebooks
    coarse = np.asarray(run["coarse"] if "coarse" in run else np.asarray(run["fine"])[:2], dtype=np.int64)
    n_coarse = coarse.size
    gen_flat = stages._flatten_codebooks(coarse)
    sem = np.asarray(run["semantic"], dtype=np.int64)
    row = stages._CoarseRow(0, np.concatenate([sem_hist, sem]), [], len(sem_hist), 0, 0)
    t_coarse, prev = 0.0, None
    for n_step in range(0, n_coarse, COARSE_WINDOW):
        row.coarse = list(coarse_hist) + list(gen_flat[:n_step])
        window = stages._coarse_window(row, n_step)
        # a window that extends what the cache holds only feeds the new tokens
        fresh = prev is None or not stages.window_extends(prev, window)
        t_coarse += prefill(co_m, len(window) if fresh else len(window) - len(prev))
        steps = min(COARSE_WINDOW, n_coarse - n_step)
        t_coarse += sum(decode_step(co_m, len(window) + j) for j in range(steps - 1))
        prev = np.concatenate([window, gen_flat[n_step : n_step + steps - 1]])
    out["coarse"] = t_coarse
    n_frames = n_coarse // 2
    n_hist = min(512, preset.fine.shape[1]) if preset else 0
    n_loops = max(0, int(np.ceil((n_frames - (1024 - n_hist)) / 512))) + 1
    fine_params = _linear_params(fi_m) - fi_m.shape.hidden_size * fi_m.shape.output_vocab_size
    per_pass = (2 * fine_params * 1024 + 4 * L * 1024 * 1024 * C) / flops
    out["fine"] = n_loops * 6 * per_pass
    return out


# ----------------------------------------------------------------------------- main


def _default_modes(device: str) -> list[str]:
    from bark_core.modules import cpu_has_fast_bf16

    if device.startswith("cuda"):
        return ["ref-fp16", "ref-fp32", "core-fp32", "core-fp16", "core-bf16"]
    modes = ["ref-fp32", "core-fp32", "core-fp32plain", "core-int8"]
    if cpu_has_fast_bf16():
        modes.append("core-bf16")
    return modes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", choices=["tiny", "small"])
    ap.add_argument("--checkpoint", help="a checkpoint directory instead of the cached random one")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", help="comma list, e.g. ref-fp32,core-fp32,core-int8,core-fp16-offload")
    ap.add_argument("--seconds", type=float, default=2.0, help="audio length (semantic tokens / 49.9)")
    ap.add_argument("--voice", default="v2/en_speaker_6", help="preset id, or 'none'")
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode; the fastest is kept")
    ap.add_argument(
        "--warmup",
        type=int,
        help="untimed runs per mode before the timed one (default: 1 on CUDA, 0 on CPU, where "
        "a first run costs little against a run of tens of seconds)",
    )
    ap.add_argument("--agreement", default="auto", help="modes to compare with fp32, 'auto' or 'none'")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--contexts", default="300,900", help="cache lengths for the batching benchmark")
    ap.add_argument("--no-batching", action="store_true")
    ap.add_argument("--json", type=Path, help="write the results here (default: benchmarks/results/)")
    ap.add_argument(
        "--threads",
        type=int,
        help="torch threads of every run (default: torch's, one per core); "
        "1 is far steadier on a machine that others load too",
    )
    args = ap.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.device.startswith("cuda") else 0
    args.modes = args.modes.split(",") if args.modes else _default_modes(args.device)
    for mode in args.modes:  # a typo fails here, not after the other modes have run
        if Mode.parse(mode).offload and not args.device.startswith("cuda"):
            ap.error(f"{mode}: offload moves stages to a GPU; it needs --device cuda")
    return args


def _child(fn, *a):  # type: ignore[no-untyped-def]
    """`fn(*a)` in a fresh spawned process: its peak RSS and GPU state are its own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *a).result()


def run_modes(args: argparse.Namespace, ckpt: str, voice: str | None, n_semantic: int) -> tuple[dict, dict]:
    """(fastest run of each mode, error text of each mode that failed): one failed mode (an
    offload hook, a dtype a card lacks) is reported, not the end of the benchmark."""
    runs: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for rep in range(args.repeat):
        for mode in args.modes:
            load = os.getloadavg()[0]
            print(f"[{rep + 1}/{args.repeat}] {mode} (load {load:.2f}) ...", flush=True)
            try:
                r = _child(run_mode, mode, ckpt, args.device, voice, n_semantic, args.warmup)
            except Exception as exc:  # any failure of the child is the mode's result
                errors[mode] = f"{type(exc).__name__}: {exc}"
                print(f"    FAILED {errors[mode]}", flush=True)
                continue
            r["loadavg_before"] = load
            print(f"    {r['total_s']:.2f} s  " + "  ".join(f"{k} {v:.2f}" for k, v in r["stage_s"].items()))
            if mode not in runs or r["total_s"] < runs[mode]["total_s"]:
                runs[mode] = r
    return runs, errors


def token_check(runs: dict) -> dict:
    """bark_core fp32 against transformers fp32: the original's greedy tokens for semantic and
    fine; transformers' coarse differs from the original by design (see README)."""
    if "ref-fp32" not in runs or "core-fp32" not in runs:
        return {}
    ref, core = runs["ref-fp32"], runs["core-fp32"]
    check: dict = {"semantic_equal": ref["semantic"] == core["semantic"]}
    ref_fine, core_coarse = np.asarray(ref["fine"]), np.asarray(core["coarse"])
    check["coarse_shapes"] = [list(core_coarse.shape), list(ref_fine[:2].shape)]
    if ref_fine[:2].shape == core_coarse.shape:  # the fine output's first two codebooks are coarse's
        check["coarse_token_match"] = float(np.mean(ref_fine[:2] == core_coarse))
        check["fine_token_match"] = float(np.mean(ref_fine == np.asarray(core["fine"])))
    return check


def agreement_modes(args: argparse.Namespace) -> list[str]:
    if args.agreement == "none":
        return []
    if args.agreement != "auto":
        return str(args.agreement).split(",")
    # offload moves the same weights: its tokens are the non-offloaded mode's
    return [m for m in args.modes if m.startswith("core-") and m != "core-fp32" and not Mode.parse(m).offload]


def run_extras(args: argparse.Namespace, ckpt: str, voice: str | None, runs: dict) -> tuple[dict, list]:
    """Agreement with fp32 (on the benchmark's device) and the batched decode step."""
    agreement: dict = {}
    modes = agreement_modes(args)
    if "core-fp32" in runs and modes:
        print(f"agreement {modes} on {args.device} ...", flush=True)
        agreement = _child(run_agreement, ckpt, modes, runs["core-fp32"], voice, args.device)
    batching: list = []
    if not args.no_batching:
        core = {Mode.parse(m).dtype for m in args.modes if m.startswith("core-")}
        print("batching ...", flush=True)
        batching = _child(
            run_batching,
            ckpt,
            sorted(core, key=modes_order),
            args.device,
            [int(c) for c in args.contexts.split(",")],
            [int(b) for b in args.batches.split(",")],
        )
    return agreement, batching


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        # read by torch at start-up in each spawned child, and set here for the parent
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    # quiet children: no progress bars or deprecation chatter between the result lines
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")

    ckpt = args.checkpoint or str(checkpoint(args.size))
    voice = None if args.voice.lower() == "none" else args.voice
    n_semantic = max(1, round(args.seconds * 49.9))
    info = machine()
    print(
        f"machine: {info['cpu']} ({info.get('gpu', 'no GPU')}), {info['cores']} cores, "
        f"{info['cpu_capability']}, load {info['loadavg_start']}"
    )
    speed = measure_machine(args.device)
    print("measured: " + ", ".join(f"{k} {v:.1f}" for k, v in speed.items()), flush=True)

    runs, errors = run_modes(args, ckpt, voice, n_semantic)
    agreement, batching = run_extras(args, ckpt, voice, runs)
    payload = {
        "benchmark": "pipeline",
        "machine": info,
        "measured": speed,
        "loadavg_end": os.getloadavg(),
        "config": {
            "checkpoint": ckpt,
            "size": args.size,
            "device": args.device,
            "text": TEXT,
            "voice": voice,
            "semantic_tokens": n_semantic,
            "repeat": args.repeat,
            "warmup": args.warmup,
        },
        "modes": summarize(runs, speed, ckpt, voice),
        "errors": errors,
        "token_check": token_check(runs),
        "agreement": agreement,
        "batching": batching,
        "runs": {
            m: {k: v for k, v in r.items() if k not in ("semantic", "coarse", "fine")}
            for m, r in runs.items()
        },
    }
    print_report(payload)
    path = write_json(f"pipeline-{args.size}-{args.device.split(':')[0]}", payload, args.json)
    print(f"\nwrote {path}")
    return 1 if errors else 0


def modes_order(dtype: str) -> int:
    return ["fp32", "fp32plain", "fp16", "bf16", "int8"].index(dtype)


def summarize(runs: dict, speed: dict, ckpt: str, voice: str | None) -> list[dict]:
    rows = []
    ref_fp32 = runs.get("ref-fp32", {}).get("total_s")
    # transformers' time per variant (dtype, offload): the like-for-like reference
    refs = {Mode.parse(m).variant: r["total_s"] for m, r in runs.items() if m.startswith("ref-")}
    best_ref = min(refs.values()) if refs else None
    for mode, r in runs.items():
        dtype, variant = Mode.parse(mode).dtype, Mode.parse(mode).variant
        n_sem = len(r["semantic"])
        n_coarse = 2 * np.asarray(r["fine"]).shape[1]
        stage = r["stage_s"]
        row = {
            "mode": mode,
            "total_s": r["total_s"],
            "cpu_s": r.get("cpu_s"),
            **{f"{s}_cpu_s": r.get("stage_cpu_s", {}).get(s) for s in STAGES},
            "audio_s": r["audio_s"],
            "rtf": r["total_s"] / max(r["audio_s"], 1e-9),
            "peak_rss_mib": r["peak_rss_mib"],
            "peak_gpu_mib": r.get("peak_gpu_mib"),
            "peak_gpu_reserved_mib": r.get("peak_gpu_reserved_mib"),
            "load_s": r["load_s"],
            "loadavg_before": r.get("loadavg_before"),
            "cuda_graphs": "/".join(map(str, r["cuda_graphs"])) if r.get("cuda_graphs") else None,
            **{f"{s}_s": stage.get(s) for s in STAGES},
            "semantic_tok_s": n_sem / stage["semantic"] if stage.get("semantic") else None,
            "coarse_tok_s": n_coarse / stage["coarse"] if stage.get("coarse") else None,
            "semantic_ms_per_tok": 1e3 * stage["semantic"] / n_sem if stage.get("semantic") else None,
            "coarse_ms_per_tok": 1e3 * stage["coarse"] / n_coarse if stage.get("coarse") else None,
        }
        floor = floors(ckpt, dtype, r, speed, voice)
        for s, f in floor.items():
            row[f"{s}_floor_s"] = f
            row[f"{s}_x_floor"] = stage[s] / f if stage.get(s) else None
        if variant in refs and mode.startswith("core-"):
            row["speedup_vs_ref_same_dtype"] = refs[variant] / r["total_s"]
        if ref_fp32 and mode.startswith("core-"):
            row["speedup_vs_ref_fp32"] = ref_fp32 / r["total_s"]
        if best_ref and mode.startswith("core-"):
            row["speedup_vs_best_ref"] = best_ref / r["total_s"]
        rows.append(row)
    return rows


def print_report(p: dict) -> None:
    m = p["machine"]
    gpu_columns = (
        [("peak_gpu_mib", "peak GPU alloc MiB"), ("peak_gpu_reserved_mib", "peak GPU reserved MiB")]
        if p["config"]["device"].startswith("cuda")
        else []
    )
    print(f"\n## Pipeline: {p['config']['semantic_tokens']} semantic tokens, voice {p['config']['voice']}")
    print(
        f"{m['cpu']} ({m.get('gpu', 'no GPU')}), {m['cores']} cores, torch {m['torch']}, "
        f"{m['cpu_capability']}; load at start {m['loadavg_start']}, end {p['loadavg_end']}\n"
    )
    print(
        table(
            p["modes"],
            [
                ("mode", "mode"),
                ("total_s", "total s"),
                ("cpu_s", "CPU s"),
                ("rtf", "RTF"),
                ("semantic_s", "semantic s"),
                ("coarse_s", "coarse s"),
                ("fine_s", "fine s"),
                ("codec_s", "codec s"),
                ("semantic_tok_s", "sem tok/s"),
                ("coarse_tok_s", "coarse tok/s"),
                ("peak_rss_mib", "peak RSS MiB"),
                *gpu_columns,
                ("speedup_vs_ref_same_dtype", "x ref same dtype"),
                ("speedup_vs_ref_fp32", "x ref fp32"),
                ("speedup_vs_best_ref", "x best ref"),
                ("loadavg_before", "load"),
            ],
        )
    )
    print("\nGap to floor (measured / floor):\n")
    print(
        table(
            p["modes"],
            [
                ("mode", "mode"),
                ("semantic_floor_s", "semantic floor s"),
                ("semantic_x_floor", "x"),
                ("coarse_floor_s", "coarse floor s"),
                ("coarse_x_floor", "x"),
                ("fine_floor_s", "fine floor s"),
                ("fine_x_floor", "x"),
            ],
        )
    )
    for mode, error in p.get("errors", {}).items():
        print(f"\n{mode} FAILED: {error}")
    if p["token_check"]:
        print(f"\nTokens, bark_core fp32 vs transformers fp32: {p['token_check']}")
    if p["agreement"]:
        print(f"\nTeacher-forced top-1 agreement with fp32, on {p['config']['device']}:\n")
        rows = [{"mode": k, **v} for k, v in p["agreement"].items() if k.startswith("core-")]
        print(
            table(rows, [("mode", "mode"), ("semantic", "semantic"), ("coarse", "coarse"), ("fine", "fine")])
        )
    if p["batching"]:
        print("\nDecode step of the coarse GPT, batch against batch 1:\n")
        print(
            table(
                p["batching"],
                [
                    ("dtype", "dtype"),
                    ("context", "cache length"),
                    ("batch", "batch"),
                    ("ms_per_step", "ms/step"),
                    ("tokens_per_s", "tokens/s"),
                    ("vs_batch_1", "x batch 1"),
                ],
            )
        )


if __name__ == "__main__":
    sys.exit(main())
