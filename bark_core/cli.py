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
from typing import TYPE_CHECKING

from .errors import BarkError
from .hub import DEFAULT_MODEL
from .params import GenerationParams

if TYPE_CHECKING:
    from .voices import VoicePreset

DEFAULT_MODEL_HELP = f"hub id or checkpoint directory (default: $BARK_MODEL, else {DEFAULT_MODEL})"
DEFAULTS = GenerationParams()  # the library's defaults are the CLI's


def _default_model() -> str:
    return os.environ.get("BARK_MODEL") or DEFAULT_MODEL


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
    make.add_argument(
        "--layout",
        choices=["hub", "safetensors"],
        default="hub",
        help="hub: pytorch_model.bin and configs as suno/bark-small holds them (transformers "
        "4.31's); safetensors: transformers 5's save_pretrained",
    )

    syn = sub.add_parser("synthesize", help="text to a 24 kHz mono WAV")
    syn.add_argument("text")
    syn.add_argument("-o", "--output", type=Path, required=True, help="output .wav")
    syn.add_argument("--model", default=None, help=DEFAULT_MODEL_HELP)
    syn.add_argument("--revision", default=None, help="hub revision (commit, tag or branch)")
    syn.add_argument("--voice", default=None, help="preset id (see `bark-tts voices`) or a .npz file")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--text-temp", type=float, default=DEFAULTS.text_temp)
    syn.add_argument("--waveform-temp", type=float, default=DEFAULTS.waveform_temp)
    syn.add_argument("--fine-temp", type=float, default=DEFAULTS.fine_temp)
    syn.add_argument("--top-k", type=int, default=DEFAULTS.top_k)
    syn.add_argument("--top-p", type=float, default=DEFAULTS.top_p)
    syn.add_argument("--min-eos-p", type=float, default=DEFAULTS.min_eos_p)
    syn.add_argument(
        "--max-duration",
        type=_positive_seconds,
        default=DEFAULTS.max_duration_s,
        help="seconds per text chunk; caps semantic tokens at round(S * 49.9)",
    )
    syn.add_argument("--continuity", choices=["fixed", "rolling"], default=DEFAULTS.continuity)
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

    out = make_checkpoint(args.directory, size=args.size, seed=args.seed, layout=args.layout)
    print(f"wrote a random-weight {args.size} checkpoint ({args.layout} layout) to {out}")


def _cmd_voices(args: argparse.Namespace) -> None:
    """One line per preset (id, language, generation), grouped by language, v2 before v1."""
    from .checkpoint import resolve_checkpoint
    from .voices import VoiceLibrary

    library = VoiceLibrary.from_checkpoint(resolve_checkpoint(args.model or _default_model(), args.revision))
    for group in library.grouped():
        for info in group.voices:
            print(f"{info.id}\t{info.language_name or '-'}\t{info.version or '-'}")


def _check_writable(path: Path, what: str) -> None:
    """Fail before minutes of loading and generating, not after, on a path we cannot write."""
    if path.is_dir():
        raise BarkError(f"{what} {path} is a directory")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise BarkError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not os.access(path if path.exists() else parent, os.W_OK):
        raise BarkError(f"cannot write {what} {path}: permission denied")


def _cmd_download(args: argparse.Namespace) -> None:
    from .checkpoint import resolve_checkpoint

    print(resolve_checkpoint(args.model or _default_model(), args.revision))


def _params(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams(
        text_temp=args.text_temp,
        waveform_temp=args.waveform_temp,
        fine_temp=args.fine_temp,
        top_k=args.top_k,
        top_p=args.top_p,
        min_eos_p=args.min_eos_p,
        max_duration_s=args.max_duration,
        continuity=args.continuity,
    )


def _voice_file(voice: str | None) -> VoicePreset | None:
    """`--voice x.npz`: the operator's own file (a service never takes paths from callers)."""
    from .voices import VoicePreset

    if not voice or not voice.endswith(".npz"):
        return None
    if not Path(voice).is_file():
        raise BarkError(f"voice file {voice} does not exist")
    return VoicePreset.from_npz_file(voice)


def _cmd_synthesize(args: argparse.Namespace) -> None:
    if args.output.suffix.lower() != ".wav":
        raise BarkError(f"output must be a .wav file, got {args.output}")
    # before torch is even imported: a bad path costs a second, not a whole generation
    _check_writable(args.output, "output")
    if args.save_voice:
        _check_writable(args.save_voice, "--save-voice")
    params = _params(args)

    import numpy as np

    from .audio import write_wav
    from .pipeline import BarkPipeline, check_precision
    from .text import split_text
    from .types import SynthesisRequest

    check_precision(args.device, args.dtype)
    split_text(args.text)  # empty text fails here, before minutes of model loading
    voice = _voice_file(args.voice)
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
