"""`bark-tts`: make checkpoints, list voices, synthesize to a WAV file, prefetch a model.

Every bad input exits with status 2 and one line on stderr; progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import BarkError

DEFAULT_MODEL_HELP = "hub id or checkpoint directory (default: $BARK_MODEL, else suno/bark-small)"


def _default_model() -> str:
    return os.environ.get("BARK_MODEL") or "suno/bark-small"


def _positive_seconds(value: str) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bark-tts", description="Bark text-to-speech")
    sub = parser.add_subparsers(dest="command", required=True)

    make = sub.add_parser("make-checkpoint", help="write a random-weight checkpoint (hub layout)")
    make.add_argument("directory", type=Path)
    make.add_argument("--size", choices=["tiny", "small"], default="tiny")
    make.add_argument("--seed", type=int, default=0)

    syn = sub.add_parser("synthesize", help="text to a 24 kHz mono WAV")
    syn.add_argument("text")
    syn.add_argument("-o", "--output", type=Path, required=True, help="output .wav")
    syn.add_argument("--model", default=None, help=DEFAULT_MODEL_HELP)
    syn.add_argument("--revision", default=None, help="hub revision (commit, tag or branch)")
    syn.add_argument("--voice", default=None, help="preset id (see `bark-tts voices`) or a .npz file")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--text-temp", type=float, default=0.7)
    syn.add_argument("--waveform-temp", type=float, default=0.7)
    syn.add_argument("--fine-temp", type=float, default=0.5)
    syn.add_argument("--top-k", type=int, default=None)
    syn.add_argument("--top-p", type=float, default=None)
    syn.add_argument("--min-eos-p", type=float, default=0.2)
    syn.add_argument(
        "--max-duration",
        type=_positive_seconds,
        default=None,
        help="seconds per text chunk; caps semantic tokens at round(S * 49.9)",
    )
    syn.add_argument("--continuity", choices=["fixed", "rolling"], default="fixed")
    syn.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    syn.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16", "int8", "auto"],
        default="float32",
        help="int8: CPU, dynamic int8 linear layers; auto: fp16 on CUDA, bf16 on CPUs with native "
        "bf16, else fp32",
    )
    syn.add_argument("--offload", action="store_true", help="CUDA: keep idle stages on the CPU")
    syn.add_argument(
        "--save-voice",
        type=Path,
        default=None,
        help="write the (last chunk's) generation as a reusable .npz preset",
    )

    voices = sub.add_parser("voices", help="list the model's voice presets")
    voices.add_argument("--model", default=None, help=DEFAULT_MODEL_HELP)
    voices.add_argument("--revision", default=None)

    down = sub.add_parser("download", help="prefetch a hub model into the HF cache")
    down.add_argument("model", nargs="?", default=None, help=DEFAULT_MODEL_HELP)
    down.add_argument("--revision", default=None)
    return parser


def _progress_bars() -> tuple[Callable[[str, int, int], None], Callable[[], None]]:
    """One tqdm bar per stage on stderr, opened on first report and closed on the next stage."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def report(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None or bar.total != total or done < bar.n:
            for other in bars.values():
                other.close()
            bars.clear()
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:>8}", file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return report, close


def _cmd_make(args: argparse.Namespace) -> None:
    from .maker import make_checkpoint

    out = make_checkpoint(args.directory, size=args.size, seed=args.seed)
    print(f"wrote a random-weight {args.size} checkpoint to {out}")


def _cmd_voices(args: argparse.Namespace) -> None:
    from .checkpoint import resolve_checkpoint
    from .voices import VoiceLibrary

    library = VoiceLibrary.from_checkpoint(resolve_checkpoint(args.model or _default_model(), args.revision))
    for info in library.list():
        print(f"{info.id}\t{info.language_name or '-'}")


def _cmd_download(args: argparse.Namespace) -> None:
    from .checkpoint import resolve_checkpoint

    print(resolve_checkpoint(args.model or _default_model(), args.revision))


def _cmd_synthesize(args: argparse.Namespace) -> None:
    import numpy as np

    from .audio import write_wav
    from .params import GenerationParams
    from .pipeline import BarkPipeline, check_precision
    from .text import split_text
    from .types import SynthesisRequest
    from .voices import VoicePreset

    if args.output.suffix.lower() != ".wav":
        raise BarkError(f"output must be a .wav file, got {args.output}")
    params = GenerationParams(
        text_temp=args.text_temp,
        waveform_temp=args.waveform_temp,
        fine_temp=args.fine_temp,
        top_k=args.top_k,
        top_p=args.top_p,
        min_eos_p=args.min_eos_p,
        max_duration_s=args.max_duration,
        continuity=args.continuity,
    )
    check_precision(args.device, args.dtype)
    split_text(args.text)  # empty text fails here, before minutes of model loading
    voice = None
    if args.voice and args.voice.endswith(".npz"):
        # the operator's own file; a service never takes paths from callers
        if not Path(args.voice).is_file():
            raise BarkError(f"voice file {args.voice} does not exist")
        voice = VoicePreset.from_npz_file(args.voice)
    pipeline = BarkPipeline.load(
        args.model or _default_model(),
        revision=args.revision,
        device=args.device,
        dtype=args.dtype,
        offload=args.offload,
    )
    if args.voice and voice is None:
        voice = pipeline.voices.get(args.voice)
    report, close = _progress_bars()
    try:
        chunks = list(pipeline.stream([SynthesisRequest(args.text, voice, params, args.seed)], report))
    finally:
        close()
    audio = np.concatenate([c.audio for c in chunks])
    write_wav(args.output, audio)
    print(f"wrote {len(audio) / pipeline.sample_rate:.2f} s of audio ({len(chunks)} chunks) to {args.output}")
    if args.save_voice:
        args.save_voice.write_bytes(chunks[-1].as_voice().to_npz_bytes())
        print(f"saved the generation as a voice preset to {args.save_voice}")


COMMANDS = {
    "make-checkpoint": _cmd_make,
    "synthesize": _cmd_synthesize,
    "voices": _cmd_voices,
    "download": _cmd_download,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        COMMANDS[args.command](args)
    except BarkError as exc:
        print(f"bark-tts: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bark-tts: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
