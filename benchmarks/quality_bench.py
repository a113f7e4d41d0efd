"""What the chunk checks (bark_core.quality) cost per chunk, on the CPU, with and without
the ASR check.

    .venv/bin/python -m benchmarks.quality_bench                 # 2, 6 and 12 s chunks
    .venv/bin/python -m benchmarks.quality_bench --seconds 4,8 --repeat 5 --threads 1

Per chunk length: the semantic checks (length and loop, on that many seconds of semantic
ids), the audio checks (silero-vad over the chunk, the two VAD checks and the trim), and the
ASR check on a random Whisper with openai/whisper-tiny's shape (39 M parameters), fp32.
Their cost does not depend on what the audio says (the VAD reads every 32 ms window, Whisper
encodes a padded 30 s window), so the audio is noise of the chunk's length. Random weights
never emit EOS: Whisper decodes exactly `--asr-tokens-per-s` tokens per second of chunk
(default 3.5: ~15 characters a second at ~4 characters a BPE token, plus the prompt), which
is what a real model transcribing the chunk would decode. Best of `--repeat` after a warm-up.

`--retry S`: what one retry costs beside the checks: one S-second chunk generated once on the
bark-small-shaped random checkpoint (capped at S seconds, since it never emits EOS), its
stage times as the pipeline reports them. A failed semantic check retries the semantic stage
only; a failed audio check all four stages.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bark_core.constants import SAMPLE_RATE, SEMANTIC_RATE_HZ
from bark_core.quality import QualityThresholds, check_semantic
from bark_core.quality.asr import WhisperAsr, check_transcript
from bark_core.quality.checker import QualityChecker
from bark_core.quality.whisper_maker import make_whisper_checkpoint
from benchmarks.common import CACHE, best_of, machine, table, write_json

TEXT = "The quick brown fox jumps over the lazy dog."  # what the ASR check compares against


def _whisper() -> WhisperAsr:
    path = CACHE / "bench-whisper-tiny"
    if not (path / "config.json").exists():
        print(f"making the whisper-tiny-shaped random checkpoint in {path} (once)", flush=True)
        make_whisper_checkpoint(path, size="whisper-tiny")
    asr = WhisperAsr.load(str(path), language="en", local_files_only=True)
    assert isinstance(asr, WhisperAsr), asr
    return asr


def _row(seconds: float, checker: QualityChecker, asr: WhisperAsr, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 10_000, round(seconds * SEMANTIC_RATE_HZ))
    audio = rng.normal(0, 0.1, round(seconds * SAMPLE_RATE)).astype(np.float32)
    n_tokens = max(1, round(seconds * args.asr_tokens_per_s))
    t = checker.thresholds

    def asr_check() -> None:
        check_transcript(asr.transcribe(audio, max_new_tokens=n_tokens), TEXT, t)

    semantic = best_of(lambda: check_semantic(tokens, seconds, t), repeat=args.repeat)
    audio_checks = best_of(lambda: checker.audio(audio, TEXT), repeat=args.repeat)
    asr_s = best_of(asr_check, repeat=args.repeat)
    without = semantic + audio_checks
    return {
        "chunk_s": seconds,
        "semantic_ms": semantic * 1e3,
        "audio_ms": audio_checks * 1e3,
        "without_asr_ms": without * 1e3,
        "asr_tokens": n_tokens,
        "asr_ms": asr_s * 1e3,
        "with_asr_ms": (without + asr_s) * 1e3,
    }


def _retry_cost(seconds: float) -> dict:
    from bark_core.params import GenerationParams
    from bark_core.pipeline import BarkPipeline
    from bark_core.types import SynthesisRequest
    from benchmarks.common import checkpoint

    pipeline = BarkPipeline.load(str(checkpoint("small")))
    request = SynthesisRequest(TEXT, None, GenerationParams(max_duration_s=seconds), seed=0)
    (chunk,) = list(pipeline.stream([request]))
    stages = chunk.stage_seconds
    return {
        "chunk_s": seconds,
        "semantic_retry_s": stages["semantic"],
        "full_retry_s": sum(stages.values()),
        **{f"{k}_s": v for k, v in stages.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", default="2,6,12", help="chunk lengths, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--asr-tokens-per-s", type=float, default=3.5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--retry", type=float, default=None, metavar="S", help="also time one S-second chunk")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    info = machine()
    checker = QualityChecker.load(QualityThresholds())  # VAD only: the ASR is timed apart
    asr = _whisper()
    started = time.perf_counter()
    rows = [_row(float(s), checker, asr, args) for s in args.seconds.split(",")]
    columns = [
        ("chunk_s", "chunk (s)"),
        ("semantic_ms", "semantic checks (ms)"),
        ("audio_ms", "VAD checks + trim (ms)"),
        ("without_asr_ms", "all, no ASR (ms)"),
        ("asr_tokens", "ASR tokens"),
        ("asr_ms", "ASR check (ms)"),
        ("with_asr_ms", "all, with ASR (ms)"),
    ]
    print(f"CPU: {info['cpu']}, torch threads {info['torch_threads']}, load {info['loadavg_start']}")
    print(table(rows, columns))
    retry = _retry_cost(args.retry) if args.retry else None
    if retry:
        print(table([retry], [(k, k) for k in retry]))
    out = write_json(
        "quality-cpu",
        {
            "machine": info,
            "args": vars(args),
            "rows": rows,
            "retry": retry,
            "wall_s": time.perf_counter() - started,
        },
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
