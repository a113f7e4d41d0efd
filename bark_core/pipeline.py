"""BarkPipeline: the loaded models and the streaming, batched text-to-speech loop.

Every request has one text chunk in flight at a time, waiting in front of one of the four
stages; one stage runs at a time, over everything waiting for it, as one batch (so a fixed
batch moves in lockstep: chunk k of every request, then chunk k + 1). Each chunk's audio is
yielded as soon as it is decoded. Requests may join a running batch (`admit`): they catch up
with the others at the next stage boundary (bark_core.scheduler says which stage runs when).
Each request samples from its own generator in its own order, so its audio does not depend
on what it was batched with. With `rolling` continuity a request's chunk k uses chunk k-1's
full generation as its voice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from . import stages
from .checkpoint import DEFAULT_MODEL, load_checkpoint, resolve_checkpoint, submodel_state
from .constants import TEXT_ENCODING_OFFSET
from .errors import InvalidParameterError
from .modules import CausalGPT, FineGPT, GPTShape, cpu_has_fast_bf16, pack_linears, quantize_int8
from .params import GenerationParams
from .scheduler import STAGES, StageQueues
from .text import normalize_whitespace, split_text
from .types import AudioChunk, SynthesisRequest
from .voices import VoiceLibrary, VoicePreset

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Precisions a caller may name: a torch dtype, `int8` (CPU: fp32 activations, dynamic int8
# linear layers) or `auto` (resolved by `resolve_precision`).
PRECISIONS = (*DTYPES, "int8", "auto")
# (stage name, steps done, steps total) -> None; the CLI draws a progress bar from it
StageProgress = Callable[[str, int, int], None]
M = TypeVar("M", bound=torch.nn.Module)


def resolve_precision(device: str, dtype: str) -> str:
    """`auto`: fp16 on CUDA; on CPU bf16 where it is native (AVX512-BF16, AMX), else fp32."""
    if dtype != "auto":
        return dtype
    if torch.device(device).type == "cuda":
        return "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def check_precision(device: str, dtype: str) -> None:
    """fp32, bf16 or int8 on CPU; fp16, bf16 or fp32 on CUDA."""
    if dtype not in PRECISIONS:
        raise InvalidParameterError(f"dtype must be one of {list(PRECISIONS)}, got {dtype!r}", param="dtype")
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise InvalidParameterError(f"device must be cpu or cuda, got {device!r}", param="device")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("device cuda asked for, but no CUDA GPU is visible", param="device")
    if kind == "cpu" and dtype == "float16":
        raise InvalidParameterError("float16 is not supported on CPU; use bfloat16 or float32", param="dtype")
    if kind == "cuda" and dtype == "int8":
        raise InvalidParameterError("int8 is a CPU mode; use float16 or bfloat16 on CUDA", param="dtype")


@dataclass
class _Row:
    """One request's progress through its text chunks."""

    index: int
    request: SynthesisRequest
    chunks: list[str]
    voice: VoicePreset | None
    generator: torch.Generator
    done: int = 0


@dataclass
class _Work:
    """One row's chunk in flight through the stages of a round."""

    row: _Row
    text: str
    semantic: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    coarse: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.int64))
    fine: np.ndarray = field(default_factory=lambda: np.zeros((8, 0), np.int64))
    seconds: dict[str, float] = field(default_factory=dict)  # its share of each stage's run
    batch: dict[str, int] = field(default_factory=dict)  # rows in each stage's run

    @property
    def params(self) -> GenerationParams:
        return self.row.request.params


def _controls(work: list[_Work], temp_of: Callable[[GenerationParams], float]) -> list[stages.RowControl]:
    return [
        stages.RowControl(
            temp=temp_of(w.params),
            top_k=w.params.top_k,
            top_p=w.params.top_p,
            generator=w.row.generator,
            should_cancel=w.row.request.should_cancel,
        )
        for w in work
    ]


class BarkPipeline:
    sample_rate = 24_000

    def __init__(
        self,
        *,
        semantic: CausalGPT,
        coarse: CausalGPT,
        fine: FineGPT,
        codec: torch.nn.Module,
        tokenizer: Any,  # transformers.BertTokenizer
        voices: VoiceLibrary,
        model_name: str,
        device: str,
        dtype: str,
        offload: bool = False,
        is_random_demo: bool = False,
    ) -> None:
        self.semantic, self.coarse, self.fine, self.codec = semantic, coarse, fine, codec
        self.tokenizer = tokenizer
        self.voices = voices
        self.model_name = model_name
        self.device = device
        self.dtype = dtype
        self.offload = offload
        self.is_random_demo = is_random_demo

    @classmethod
    def load(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        offload: bool = False,
        pack: bool = True,
    ) -> BarkPipeline:
        """Load a hub id or checkpoint directory onto `device` in `dtype` (EnCodec stays fp32).

        `pack`: on CPU in fp32, the GPTs' linear layers use oneDNN-packed weights
        (modules.PackedLinear); False keeps aten's plain linears."""
        check_precision(device, dtype)
        dtype = resolve_precision(device, dtype)
        root = resolve_checkpoint(model, revision)
        ckpt = load_checkpoint(root)
        bark = ckpt.bark
        torch_dtype = DTYPES.get(dtype, torch.float32)  # int8 quantizes fp32 weights
        home = "cpu" if offload else device  # offloaded stages rest on the CPU between uses

        def build(module: M, source: torch.nn.Module, pack_head: bool = False) -> M:
            module.load_state_dict(submodel_state(source), strict=True, assign=True)
            module.to(device=home, dtype=torch_dtype).eval()
            if dtype == "int8":
                quantize_int8(module)
            elif pack and dtype == "float32" and home == "cpu" and device == "cpu":
                pack_linears(module, head=pack_head)  # type: ignore[arg-type]
            return module

        fine_cfg = bark.config.fine_acoustics_config
        semantic = build(
            CausalGPT(GPTShape.from_config(bark.config.semantic_config)), bark.semantic, pack_head=True
        )
        coarse = build(
            CausalGPT(GPTShape.from_config(bark.config.coarse_acoustics_config)), bark.coarse_acoustics
        )
        fine = build(
            FineGPT(GPTShape.from_config(fine_cfg), fine_cfg.n_codes_total, fine_cfg.n_codes_given),
            bark.fine_acoustics,
        )
        codec: torch.nn.Module = bark.codec_model.to(home).eval()
        if ckpt.is_random_demo:
            log.warning("model %s has RANDOM weights: its audio is noise, for tests and demos only", model)
        return cls(
            semantic=semantic,
            coarse=coarse,
            fine=fine,
            codec=codec,
            tokenizer=ckpt.tokenizer,
            voices=VoiceLibrary.from_checkpoint(root),
            model_name=model,
            device=device,
            dtype=dtype,
            offload=offload,
            is_random_demo=ckpt.is_random_demo,
        )

    # ------------------------------------------------------------------ stages with offload

    @contextmanager
    def _on_device(self, module: M) -> Iterator[M]:
        """With offload, bring one stage to the GPU for its use and send it back after."""
        if not self.offload:
            yield module
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")
            torch.cuda.empty_cache()

    def encode_text(self, text: str) -> np.ndarray:
        ids = self.tokenizer.encode(normalize_whitespace(text), add_special_tokens=False)
        if len(ids) > 256:
            log.warning("text chunk of %d tokens cut to 256", len(ids))
        return np.asarray(ids, dtype=np.int64) + TEXT_ENCODING_OFFSET

    @torch.inference_mode()
    def decode(self, fine: np.ndarray) -> np.ndarray:
        """EnCodec: (8, T) codes -> float32 audio of T * 320 samples."""
        if fine.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        with self._on_device(self.codec) as codec:
            device = next(codec.parameters()).device
            codes = torch.from_numpy(fine).to(device)[:, None, :]  # (n_q, B=1, T)
            codec_any: Any = codec  # transformers' EncodecModel
            audio = codec_any.decoder(codec_any.quantizer.decode(codes))
        return audio.squeeze().float().cpu().numpy().astype(np.float32).reshape(-1)

    # ------------------------------------------------------------------ generation

    def stream(
        self,
        requests: Sequence[SynthesisRequest],
        progress: StageProgress | None = None,
        *,
        admit: Callable[[int], Sequence[SynthesisRequest]] | None = None,
        max_rows: int = 64,
    ) -> Iterator[AudioChunk]:
        """Yield every request's chunks as they are decoded; see the module docstring.

        `admit(free)` is asked before every stage run for up to `free` more requests (at most
        `max_rows` in flight); an admitted request's chunks carry the next `request_index`
        after those of every request seen before it."""
        rows: list[_Row] = []
        queues: StageQueues[_Work] = StageQueues()

        def add(request: SynthesisRequest) -> None:
            gen_device = self.device if torch.device(self.device).type == "cuda" else "cpu"
            gen = torch.Generator(device=gen_device)
            gen.manual_seed(request.seed)
            row = _Row(len(rows), request, split_text(request.text), request.voice, gen)
            rows.append(row)
            if row.chunks:
                queues.put("semantic", _Work(row, row.chunks[0]))

        for request in requests:
            add(request)
        while True:
            if admit is not None and len(queues) < max_rows:
                for request in admit(max_rows - len(queues)):
                    add(request)
            for w in queues.items():
                if _cancelled(w.row.request):
                    queues.remove(w)
            taken = queues.take()
            if taken is None:
                return
            stage, work = taken
            if stage == "codec":
                for w in work:
                    if not _cancelled(w.row.request):
                        yield self._finish_chunk(w, queues)
                continue
            t0 = time.perf_counter()
            results = self._run_stage(stage, work, progress)
            share = (time.perf_counter() - t0) / len(work)
            for w, result in zip(work, results, strict=True):
                if result is None:  # cancelled during the stage: the row ends here
                    continue
                setattr(w, stage, result)
                w.seconds[stage], w.batch[stage] = share, len(work)
                queues.put(STAGES[STAGES.index(stage) + 1], w)

    def _run_stage(self, stage: str, work: list[_Work], progress: StageProgress | None) -> list[Any]:
        """One batched run of `stage` over `work`: a result per row, None where it was cancelled."""
        report = (lambda done, total: progress(stage, done, total)) if progress else None
        if stage == "semantic":
            with self._on_device(self.semantic) as model:
                return stages.generate_semantic(
                    model,
                    [self.encode_text(w.text) for w in work],
                    [w.row.voice.semantic if w.row.voice else None for w in work],
                    _controls(work, lambda p: p.text_temp),
                    [w.params.min_eos_p for w in work],
                    [w.params.max_semantic_tokens for w in work],
                    report,
                )
        if stage == "coarse":
            with self._on_device(self.coarse) as model:
                return stages.generate_coarse(
                    model,
                    [w.semantic for w in work],
                    [(w.row.voice.semantic, w.row.voice.coarse) if w.row.voice else None for w in work],
                    _controls(work, lambda p: p.waveform_temp),
                    report,
                )
        with self._on_device(self.fine) as model:
            return stages.generate_fine(
                model,
                [w.coarse for w in work],
                [w.row.voice.fine if w.row.voice else None for w in work],
                _controls(work, lambda p: p.fine_temp),
                report,
            )

    def _finish_chunk(self, w: _Work, queues: StageQueues[_Work]) -> AudioChunk:
        """Decode a chunk to audio, and queue the request's next text chunk (if any)."""
        t0 = time.perf_counter()
        row = w.row
        chunk = AudioChunk(
            request_index=row.index,
            chunk_index=row.done,
            n_chunks=len(row.chunks),
            text=w.text,
            audio=self.decode(w.fine),
            semantic=w.semantic,
            coarse=w.coarse,
            fine=w.fine,
            stage_seconds={**w.seconds, "codec": time.perf_counter() - t0},
            stage_batch=dict(w.batch),
        )
        row.done += 1
        if w.params.continuity == "rolling" and w.coarse.shape[1] > 0:
            row.voice = chunk.as_voice()
        if row.done < len(row.chunks):
            queues.put("semantic", _Work(row, row.chunks[row.done]))
        return chunk

    def synthesize(
        self,
        text: str,
        voice: VoicePreset | None = None,
        params: GenerationParams | None = None,
        seed: int = 0,
        progress: StageProgress | None = None,
    ) -> np.ndarray:
        """The whole audio of one text, chunks concatenated."""
        request = SynthesisRequest(text, voice, params or GenerationParams(), seed)
        parts = [c.audio for c in self.stream([request], progress)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _cancelled(request: SynthesisRequest) -> bool:
    return request.should_cancel is not None and request.should_cancel()
