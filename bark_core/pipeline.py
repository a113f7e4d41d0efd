"""BarkPipeline: the loaded models and the streaming, batched text-to-speech loop.

Each request's text is planned into chunks (`plan`), and its chunks enter the batch as rows
of their own where they are independent (bark_core.longform says which may start when, with
which history, and how rows are shared among requests). Every chunk in flight waits in front
of one of the four stages; one stage runs at a time, over everything waiting for it, as one
batch. Requests may join a running batch (`admit`): their chunks catch up with the others at
the next stage boundary (bark_core.scheduler says which stage runs when). Each chunk samples
from its own generator, seeded from (seed, chunk index), so a request's audio does not depend
on what it was batched with nor on how many of its chunks ran at once. Each request's chunks
are yielded in order, each once it and the ones before it are decoded, joined by a short
pause and faded at their ends (bark_core.seams).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

from . import stages
from .checkpoint import DEFAULT_MODEL, load_checkpoint, resolve_checkpoint, submodel_state
from .constants import MAX_ROWS, MAX_TEXT_TOKENS, ROWS_PER_REQUEST, SAMPLE_RATE, TEXT_ENCODING_OFFSET
from .decode_step import Graphs
from .errors import InvalidParameterError
from .longform import Chunk, RequestState, start_chunks
from .modules import (
    CausalGPT,
    FineGPT,
    GPTShape,
    PackChoice,
    PackMode,
    cpu_has_fast_bf16,
    pack_cpu_models,
    quantize_int8,
)
from .offload import OffloadedStage
from .params import GenerationParams, semantic_tokens_for
from .planner import DEFAULT_FIRST_CHUNK_S, DEFAULT_TARGET_S, PlannedChunk, plan_chunks
from .quality.checker import QualityChecker
from .retries import Outcome, check_audio, checker_for_weights, retry_semantic
from .scheduler import BATCHED, STAGES, StageQueues
from .seams import join_chunk, pause_samples
from .text import normalize_whitespace
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
    """`auto`: bf16 on GPUs that have it (sm80+: fp16's range is what overflows in Bark's
    attention), else fp16; on CPU bf16 where it is native (AVX512-BF16, AMX), else fp32."""
    if dtype != "auto":
        return dtype
    if torch.device(device).type == "cuda":
        return "bfloat16" if torch.cuda.get_device_capability(device)[0] >= 8 else "float16"
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


def _build_gpts(bark: Any, device: str, dtype: str, offload: bool) -> tuple[CausalGPT, CausalGPT, FineGPT]:
    """Our three GPTs holding transformers' BarkModel weights, in `dtype` (int8: quantized),
    on `device` (on the CPU with offload: the stages rest there between uses)."""
    torch_dtype = DTYPES.get(dtype, torch.float32)  # int8 quantizes fp32 weights
    home = "cpu" if offload else device

    def build(module: M, source: torch.nn.Module) -> M:
        module.load_state_dict(submodel_state(source), strict=True, assign=True)
        module.to(device=home, dtype=torch_dtype).eval()
        if dtype == "int8":
            quantize_int8(module)
        return module

    config = bark.config
    fine_cfg = config.fine_acoustics_config
    return (
        build(CausalGPT(GPTShape.from_config(config.semantic_config)), bark.semantic),
        build(CausalGPT(GPTShape.from_config(config.coarse_acoustics_config)), bark.coarse_acoustics),
        build(
            FineGPT(GPTShape.from_config(fine_cfg), fine_cfg.n_codes_total, fine_cfg.n_codes_given),
            bark.fine_acoustics,
        ),
    )


def _pack(pack: bool | PackMode, semantic: CausalGPT, coarse: CausalGPT, fine: FineGPT) -> PackChoice:
    mode: PackMode = ("on" if pack else "off") if isinstance(pack, bool) else pack
    return pack_cpu_models(mode, semantic, coarse, fine)


def _controls(chunks: list[Chunk], temp_of: Callable[[GenerationParams], float]) -> list[stages.RowControl]:
    return [
        stages.RowControl(
            temp=temp_of(c.params),
            top_k=c.params.top_k,
            top_p=c.params.top_p,
            generator=c.generator,
            should_cancel=c.request.should_cancel,
        )
        for c in chunks
    ]


class BarkPipeline:
    sample_rate = SAMPLE_RATE

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
        # offloaded stages rest in pinned host memory (made once) between their turns
        self._offloaded = {id(m): OffloadedStage(m) for m in (semantic, coarse, fine)} if offload else {}
        # the planner's limits for every request's chunks (set them after `load` to change)
        self.chunk_target_s = DEFAULT_TARGET_S
        self.first_chunk_s: float | None = DEFAULT_FIRST_CHUNK_S
        # the chunk checks (bark_core.quality; None: off) and the attempts per chunk
        self.quality: QualityChecker | None = None
        self.quality_attempts = 1
        # decode steps with the same shapes every step (a static cache), and on CUDA those
        # steps replayed as CUDA graphs (bark_core.decode_step); set by `load`
        self.static_shapes = False
        self.graphs: Graphs | None = None

    def set_quality(
        self, checker: QualityChecker | None, attempts: int = 1, *, random_weights: bool | None = None
    ) -> None:
        """Check every chunk with `checker`, trying each up to `attempts` times (bark_core.retries).
        `random_weights` (default: whether this checkpoint is the random demo) turns off the
        checks whose signal random weights cannot give."""
        if attempts < 1:
            raise InvalidParameterError(f"attempts must be >= 1, got {attempts}", param="attempts")
        blind = self.is_random_demo if random_weights is None else random_weights
        self.quality = None if checker is None else checker_for_weights(checker, blind)
        self.quality_attempts = attempts

    @classmethod
    def load(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        offload: bool = False,
        pack: bool | PackMode = True,
        cuda_graphs: bool = True,
        cudnn_sdpa: bool = False,
    ) -> BarkPipeline:
        """Load a hub id or checkpoint directory onto `device` in `dtype` (EnCodec stays fp32).

        `pack`: on CPU in fp32, whether the GPTs' linear layers use oneDNN-packed weights
        (modules.PackedLinear): "on" (True), "off" (False), or "auto": measured here, at load,
        packed only where it is faster on this CPU (the choice is logged with its figures).
        `cuda_graphs`, `cudnn_sdpa`: CUDA only, see `configure_cuda`."""
        check_precision(device, dtype)
        dtype = resolve_precision(device, dtype)
        root = resolve_checkpoint(model, revision)
        ckpt = load_checkpoint(root)
        bark = ckpt.bark
        semantic, coarse, fine = _build_gpts(bark, device, dtype, offload)
        if device == "cpu" and dtype == "float32":
            choice = _pack(pack, semantic, coarse, fine)
            log.info("cpu linears: %s", choice.describe())
        # EnCodec stays on the device even with offload: it is small, and it runs for every chunk
        codec: torch.nn.Module = bark.codec_model.to(device).eval()
        if ckpt.is_random_demo:
            log.warning("model %s has RANDOM weights: its audio is noise, for tests and demos only", model)
        pipe = cls(
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
        if torch.device(device).type == "cuda":
            pipe.configure_cuda(cuda_graphs=cuda_graphs, cudnn_sdpa=cudnn_sdpa)
        return pipe

    def configure_cuda(self, *, cuda_graphs: bool, cudnn_sdpa: bool) -> None:
        """`cuda_graphs`: static decode shapes, each step replayed as a CUDA graph (one launch
        for a step's ~355 kernels). `cudnn_sdpa`: let PyTorch pick cuDNN attention; off by
        default, as cuDNN keys its plan cache on exact shapes and has been reported to stall
        23-37 ms building a plan for each new cache length (torch 2.13, H100). The setting is
        the process's: a worker holds one pipeline."""
        torch.backends.cuda.enable_cudnn_sdp(cudnn_sdpa)
        self.graphs = Graphs() if cuda_graphs else None
        self.static_shapes = cuda_graphs

    # ------------------------------------------------------------------ stages with offload

    @contextmanager
    def _on_device(self, module: M) -> Iterator[M]:
        """With offload, bring one stage to the GPU for its use and send it back after."""
        stage = self._offloaded.get(id(module))
        if stage is None:
            yield module
            return
        stage.to_device(self.device)
        try:
            yield module
        finally:
            stage.to_host()

    def encode_text(self, text: str) -> np.ndarray:
        ids = self.tokenizer.encode(normalize_whitespace(text), add_special_tokens=False)
        if len(ids) > MAX_TEXT_TOKENS:
            log.warning("text chunk of %d tokens cut to %d", len(ids), MAX_TEXT_TOKENS)
        return np.asarray(ids, dtype=np.int64) + TEXT_ENCODING_OFFSET

    @torch.inference_mode()
    def decode(self, fine: np.ndarray) -> np.ndarray:
        """EnCodec: (8, T) codes -> float32 audio of T * 320 samples."""
        if fine.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        device = next(self.codec.parameters()).device
        codes = torch.from_numpy(fine).to(device)[:, None, :]  # (n_q, B=1, T)
        codec_any: Any = self.codec  # transformers' EncodecModel
        audio = codec_any.decoder(codec_any.quantizer.decode(codes))
        return audio.squeeze().float().cpu().numpy().astype(np.float32).reshape(-1)

    # ------------------------------------------------------------------ generation

    @property
    def caps_demo_length(self) -> bool:
        """True on a random-weight checkpoint, which never emits EOS: there a chunk without
        `max_duration_s` is capped at its estimated spoken duration, not at the 768-token
        window (15.4 s of noise for "Hello")."""
        return self.is_random_demo

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(normalize_whitespace(text), add_special_tokens=False))

    def plan(self, request: SynthesisRequest) -> list[PlannedChunk]:
        """The request's text chunks and their estimated spoken durations (bark_core.planner:
        within `chunk_target_s` each, the first within `first_chunk_s`; None: no short first
        chunk), in the request's language, at most 256 of our tokenizer's tokens each."""
        return plan_chunks(
            request.text,
            request.language,
            target_s=self.chunk_target_s,
            first_chunk_s=self.first_chunk_s,
            count_tokens=self.count_tokens,
        )

    def semantic_cap(self, params: GenerationParams, estimate_s: float) -> int:
        """The semantic tokens a chunk may generate (see `caps_demo_length`)."""
        if params.max_duration_s is None and self.caps_demo_length:
            return semantic_tokens_for(estimate_s)
        return params.max_semantic_tokens

    def stream(
        self,
        requests: Sequence[SynthesisRequest],
        progress: StageProgress | None = None,
        *,
        admit: Callable[[int], Sequence[SynthesisRequest]] | None = None,
        max_rows: int = MAX_ROWS,
        rows_per_request: int = ROWS_PER_REQUEST,
    ) -> Iterator[AudioChunk]:
        """Yield every request's chunks, each request's in order; see the module docstring.

        At most `max_rows` chunks are in flight, at most `rows_per_request` of one request
        (1: one chunk at a time). `admit(free)` is asked before every stage run for up to
        `free` more requests (at most `max_rows` requests unfinished); an admitted request's
        chunks carry the next `request_index` after those of every request seen before it."""
        if max_rows < 1 or rows_per_request < 1:
            raise InvalidParameterError(
                f"max_rows and rows_per_request must be >= 1, got {max_rows} and {rows_per_request}",
                param="rows_per_request" if max_rows >= 1 else "max_rows",
            )
        batch = _Batch(self, progress, max_rows, rows_per_request)
        for request in requests:
            batch.add(request)
        while True:
            batch.admit(admit)
            taken = batch.next_stage()
            if taken is None:
                return
            stage, chunks = taken
            if stage == "codec":
                yield from batch.decode(chunks)
            else:
                batch.run(stage, chunks)

    def run_stage(self, stage: str, chunks: list[Chunk], progress: StageProgress | None) -> list[Any]:
        """One batched run of `stage` over `chunks`: a result per row, None where cancelled."""
        report = (lambda done, total: progress(stage, done, total)) if progress else None
        if stage == "semantic":
            with self._on_device(self.semantic) as model:
                return stages.generate_semantic(
                    model,
                    [self.encode_text(c.text) for c in chunks],
                    [c.history.semantic if c.history else None for c in chunks],
                    _controls(chunks, lambda p: p.text_temp),
                    [c.params.min_eos_p for c in chunks],
                    [self.semantic_cap(c.params, c.estimate_s) for c in chunks],
                    report,
                    static_shapes=self.static_shapes,
                    graphs=self.graphs,
                )
        if stage == "coarse":
            with self._on_device(self.coarse) as model:
                return stages.generate_coarse(
                    model,
                    [c.semantic for c in chunks],
                    [(c.history.semantic, c.history.coarse) if c.history else None for c in chunks],
                    _controls(chunks, lambda p: p.waveform_temp),
                    report,
                    static_shapes=self.static_shapes,
                    graphs=self.graphs,
                )
        with self._on_device(self.fine) as model:
            return stages.generate_fine(
                model,
                [c.coarse for c in chunks],
                [c.history.fine if c.history else None for c in chunks],
                _controls(chunks, lambda p: p.fine_temp),
                report,
            )

    def audio_chunk(
        self, chunk: Chunk, outcome: Outcome | None = None, t0: float | None = None
    ) -> AudioChunk:
        """Decode a generated chunk into the audio that goes out (bark_core.seams); with checks
        on, the `outcome` of its attempts (trimmed audio) instead, whose decode began at `t0`."""
        t0 = time.perf_counter() if t0 is None else t0
        pause_s = chunk.params.chunk_pause_s if chunk.index > 0 else 0.0
        decoded = self.decode(chunk.fine) if outcome is None else outcome.audio
        checked = {} if outcome is None else _outcome_fields(chunk, outcome)
        return AudioChunk(
            request_index=chunk.owner.index,
            chunk_index=chunk.index,
            n_chunks=chunk.owner.n_chunks,
            text=chunk.text,
            audio=join_chunk(decoded, chunk.index, pause_s),
            semantic=chunk.semantic,
            coarse=chunk.coarse,
            fine=chunk.fine,
            stage_seconds={**chunk.seconds, "codec": time.perf_counter() - t0},
            stage_batch=dict(chunk.batch),
            estimate_s=chunk.estimate_s,
            pause_s=pause_samples(pause_s) / SAMPLE_RATE,
            **checked,
        )

    def synthesize(
        self,
        text: str,
        voice: VoicePreset | None = None,
        params: GenerationParams | None = None,
        seed: int = 0,
        progress: StageProgress | None = None,
        *,
        rows_per_request: int = ROWS_PER_REQUEST,
    ) -> np.ndarray:
        """The whole audio of one text, chunks joined."""
        request = SynthesisRequest(text, voice, params or GenerationParams(), seed)
        parts = [c.audio for c in self.stream([request], progress, rows_per_request=rows_per_request)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


class _Batch:
    """One `stream` call's requests and the stage queues of their chunks in flight."""

    def __init__(
        self, pipe: BarkPipeline, progress: StageProgress | None, max_rows: int, rows_per_request: int
    ) -> None:
        self.pipe = pipe
        self.progress = progress
        self.max_rows = max_rows
        self.rows_per_request = rows_per_request
        self.states: list[RequestState] = []  # every request seen, by request_index
        self.queues: StageQueues[Chunk] = StageQueues()

    def add(self, request: SynthesisRequest) -> None:
        """A new request with its planned chunks. A text our tokenizer refuses (a lone
        surrogate, say) ends that request alone: it yields no chunk, and its batch-mates go on.
        The planner's own errors (an empty text) still raise, as for a request alone."""
        try:
            plan = self.pipe.plan(request)
        except (TypeError, ValueError, UnicodeError) as exc:  # the tokenizer's, not our own errors
            log.warning("request %d's text cannot be tokenized (%s): it ends alone", len(self.states), exc)
            plan = []
        state = RequestState(len(self.states), request, plan, self.pipe.device)
        state.dropped = not plan
        self.states.append(state)

    def unfinished(self) -> list[RequestState]:
        return [s for s in self.states if not s.finished]

    def admit(self, admit: Callable[[int], Sequence[SynthesisRequest]] | None) -> None:
        free = self.max_rows - len(self.unfinished())
        if admit is not None and free > 0:
            for request in admit(free):
                self.add(request)

    def next_stage(self) -> tuple[str, list[Chunk]] | None:
        """Drop cancelled requests, start chunks on the free rows, take the next stage."""
        for state in self.unfinished():
            if _cancelled(state.request):
                self._drop(state)
        free = self.max_rows - len(self.queues)
        for chunk in start_chunks(self.unfinished(), free, self.rows_per_request):
            self.queues.put(STAGES[0], chunk)
        return self.queues.take()

    def _drop(self, state: RequestState) -> None:
        state.drop()
        for chunk in self.queues.items():
            if chunk.owner is state:
                self.queues.remove(chunk)

    def run(self, stage: str, chunks: list[Chunk]) -> None:
        t0 = time.perf_counter()
        results = self.pipe.run_stage(stage, chunks, self.progress)
        share = (time.perf_counter() - t0) / len(chunks)
        for chunk, result in zip(chunks, results, strict=True):
            if result is None:  # cancelled during the stage: the request ends here
                self._drop(chunk.owner)
            if chunk.owner.dropped:
                continue
            setattr(chunk, stage, result)
            chunk.seconds[stage], chunk.batch[stage] = share, len(chunks)
            quality = self.pipe.quality
            if stage == STAGES[0] and quality and retry_semantic(chunk, quality, self.pipe.quality_attempts):
                self.queues.put(STAGES[0], chunk)
                continue
            if stage == BATCHED[-1] and quality is None:  # with checks: once an attempt is kept
                chunk.owner.on_generated(chunk)
            self.queues.put(STAGES[STAGES.index(stage) + 1], chunk)

    def decode(self, chunks: list[Chunk]) -> Iterator[AudioChunk]:
        for chunk in chunks:
            if _cancelled(chunk.request):
                self._drop(chunk.owner)
            if chunk.owner.dropped:
                continue
            if self.pipe.quality is None:
                yield from chunk.owner.on_decoded(self.pipe.audio_chunk(chunk))
                continue
            t0 = time.perf_counter()
            outcome = check_audio(
                chunk, self.pipe.quality, self.pipe.quality_attempts, self.pipe.decode(chunk.fine)
            )
            if outcome is None:  # goes round again from the semantic stage
                self.queues.put(STAGES[0], chunk)
                continue
            chunk.owner.on_generated(chunk)
            yield from chunk.owner.on_decoded(self.pipe.audio_chunk(chunk, outcome, t0))


def _outcome_fields(chunk: Chunk, outcome: Outcome) -> dict[str, Any]:
    return {
        "attempts": chunk.attempt + 1,
        "attempt_checks": outcome.attempt_checks,
        "sent_attempt": outcome.sent_attempt,
        "all_failed": outcome.all_failed,
        "trimmed_s": outcome.trimmed_s,
    }


def _cancelled(request: SynthesisRequest) -> bool:
    return request.should_cancel is not None and request.should_cancel()
