"""BarkPipeline: the loaded models and the streaming, batched text-to-speech loop.

A batch is processed in rounds: round k generates text chunk k of every request that has one,
through all four stages at once, and yields each row's audio as soon as it is decoded. With
`rolling` continuity a request's chunk k uses chunk k-1's full generation as its voice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from . import stages
from .checkpoint import DEFAULT_MODEL, load_checkpoint, resolve_checkpoint, submodel_state
from .constants import TEXT_ENCODING_OFFSET
from .errors import InvalidParameterError
from .modules import CausalGPT, FineGPT, GPTShape
from .text import normalize_whitespace, split_text
from .types import AudioChunk, SynthesisRequest
from .voices import VoiceLibrary, VoicePreset

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# (stage name, steps done, steps total) -> None; the CLI draws a progress bar from it
StageProgress = Callable[[str, int, int], None]


def check_precision(device: str, dtype: str) -> None:
    """fp32 or bf16 on CPU; fp16 or bf16 (or fp32) on CUDA."""
    if dtype not in DTYPES:
        raise InvalidParameterError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}", param="dtype")
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise InvalidParameterError(f"device must be cpu or cuda, got {device!r}", param="device")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("device cuda asked for, but no CUDA GPU is visible", param="device")
    if kind == "cpu" and dtype == "float16":
        raise InvalidParameterError("float16 is not supported on CPU; use bfloat16 or float32", param="dtype")


@dataclass
class _Row:
    """One request's progress through its text chunks."""

    index: int
    request: SynthesisRequest
    chunks: list[str]
    voice: VoicePreset | None
    generator: torch.Generator
    done: int = 0


class BarkPipeline:
    sample_rate = 24_000

    def __init__(
        self,
        *,
        semantic: CausalGPT,
        coarse: CausalGPT,
        fine: FineGPT,
        codec: torch.nn.Module,
        tokenizer,  # type: ignore[no-untyped-def]
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
    ) -> BarkPipeline:
        """Load a hub id or checkpoint directory onto `device` in `dtype` (EnCodec stays fp32)."""
        check_precision(device, dtype)
        root = resolve_checkpoint(model, revision)
        ckpt = load_checkpoint(root)
        bark = ckpt.bark
        torch_dtype = DTYPES[dtype]
        home = "cpu" if offload else device  # offloaded stages rest on the CPU between uses

        def build(module: torch.nn.Module, source: torch.nn.Module) -> torch.nn.Module:
            module.load_state_dict(submodel_state(source), strict=True, assign=True)
            return module.to(device=home, dtype=torch_dtype).eval()

        fine_cfg = bark.config.fine_acoustics_config
        semantic = build(CausalGPT(GPTShape.from_config(bark.config.semantic_config)), bark.semantic)
        coarse = build(
            CausalGPT(GPTShape.from_config(bark.config.coarse_acoustics_config)), bark.coarse_acoustics
        )
        fine = build(
            FineGPT(GPTShape.from_config(fine_cfg), fine_cfg.n_codes_total, fine_cfg.n_codes_given),
            bark.fine_acoustics,
        )
        codec = bark.codec_model.to(home).eval()
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
    def _on_device(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
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
            emb = codec.quantizer.decode(codes)
            audio = codec.decoder(emb)
        return audio.squeeze().float().cpu().numpy().astype(np.float32).reshape(-1)

    # ------------------------------------------------------------------ generation

    def stream(
        self, requests: Sequence[SynthesisRequest], progress: StageProgress | None = None
    ) -> Iterator[AudioChunk]:
        """Yield every request's chunks as they are decoded; see the module docstring."""
        rows = []
        for i, req in enumerate(requests):
            gen_device = self.device if torch.device(self.device).type == "cuda" else "cpu"
            gen = torch.Generator(device=gen_device)
            gen.manual_seed(req.seed)
            rows.append(_Row(i, req, split_text(req.text), req.voice, gen))
        while True:
            live = [r for r in rows if r.done < len(r.chunks) and not _cancelled(r.request)]
            if not live:
                return
            yield from self._round(live, progress)

    def _round(self, rows: list[_Row], progress: StageProgress | None) -> Iterator[AudioChunk]:
        texts = [r.chunks[r.done] for r in rows]

        def controls(temp_of: Callable[[SynthesisRequest], float]) -> list[stages.RowControl]:
            return [
                stages.RowControl(
                    temp=temp_of(r.request),
                    top_k=r.request.params.top_k,
                    top_p=r.request.params.top_p,
                    generator=r.generator,
                    should_cancel=r.request.should_cancel,
                )
                for r in rows
            ]

        def stage_progress(name: str) -> stages.Progress | None:
            return (lambda done, total: progress(name, done, total)) if progress else None

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with self._on_device(self.semantic) as model:
            semantic = stages.generate_semantic(
                model,
                [self.encode_text(t) for t in texts],
                [r.voice.semantic if r.voice else None for r in rows],
                controls(lambda q: q.params.text_temp),
                [r.request.params.min_eos_p for r in rows],
                [r.request.params.max_semantic_tokens for r in rows],
                stage_progress("semantic"),
            )
        timings["semantic"] = time.perf_counter() - t0
        keep = [i for i, s in enumerate(semantic) if s is not None]
        rows, semantic = [rows[i] for i in keep], [semantic[i] for i in keep]

        t0 = time.perf_counter()
        with self._on_device(self.coarse) as model:
            coarse = stages.generate_coarse(
                model,
                semantic,
                [(r.voice.semantic, r.voice.coarse) if r.voice else None for r in rows],
                controls(lambda q: q.params.waveform_temp),
                stage_progress("coarse"),
            )
        timings["coarse"] = time.perf_counter() - t0
        keep = [i for i, c in enumerate(coarse) if c is not None]
        rows, semantic, coarse = (
            [rows[i] for i in keep],
            [semantic[i] for i in keep],
            [coarse[i] for i in keep],
        )

        t0 = time.perf_counter()
        with self._on_device(self.fine) as model:
            fine = stages.generate_fine(
                model,
                coarse,
                [r.voice.fine if r.voice else None for r in rows],
                controls(lambda q: q.params.fine_temp),
                stage_progress("fine"),
            )
        timings["fine"] = time.perf_counter() - t0

        share = {k: v / max(1, len(rows)) for k, v in timings.items()}
        for r, sem, co, fi in zip(rows, semantic, coarse, fine, strict=True):
            if fi is None or _cancelled(r.request):
                continue
            t0 = time.perf_counter()
            audio = self.decode(fi)
            chunk = AudioChunk(
                request_index=r.index,
                chunk_index=r.done,
                n_chunks=len(r.chunks),
                text=r.chunks[r.done],
                audio=audio,
                semantic=sem,
                coarse=co,
                fine=fi,
                stage_seconds={**share, "codec": time.perf_counter() - t0},
            )
            r.done += 1
            if r.request.params.continuity == "rolling" and co.shape[1] > 0:
                r.voice = chunk.as_voice()
            yield chunk

    def synthesize(
        self,
        text: str,
        voice: VoicePreset | None = None,
        params: object = None,
        seed: int = 0,
        progress: StageProgress | None = None,
    ) -> np.ndarray:
        """The whole audio of one text, chunks concatenated."""
        from .params import GenerationParams

        request = SynthesisRequest(
            text, voice, params if isinstance(params, GenerationParams) else GenerationParams(), seed
        )
        parts = [c.audio for c in self.stream([request], progress)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _cancelled(request: SynthesisRequest) -> bool:
    return request.should_cancel is not None and request.should_cancel()
