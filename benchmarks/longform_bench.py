"""Long-form benchmark: a paragraph's chunks one at a time against the parallel default.

Two paragraphs of similar spoken length, an 8-sentence English one (~600 characters) and a
Chinese one, are streamed through bark_core's pipeline on the `small` random checkpoint
(bark-small's shapes), once with `rows_per_request=1` (one chunk in flight at a time) and once
with the parallel default, side by side in one process and one run. The random model never
emits EOS, so every chunk is capped at its planner estimate (the pipeline's demo cap), both
ways alike; `--scale` caps it at a fraction of the estimate instead, for a machine where the
full run takes too long (both ways alike again). Per run: time to first audio, total wall
time, audio seconds, the rows of every stage run, and whether both ways gave the same audio
(they must: every chunk samples from its own seeded generator).

    .venv/bin/python -m benchmarks.longform_bench --threads 2
    .venv/bin/python -m benchmarks.longform_bench --scale 0.25 --threads 2   # a quarter of the audio
    .venv/bin/python -m benchmarks.longform_bench --size tiny                # smoke run
    .venv/bin/python -m benchmarks.longform_bench --voice none               # no preset: anchor
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import checkpoint, machine, table, write_json

EN = (
    "The old lighthouse stood at the edge of the cliff, its white paint peeling in the salty wind. "
    "Every evening the keeper climbed the spiral stairs to light the great lamp. "
    "Ships far out at sea watched for its steady beam as night fell over the water. "
    "One winter a storm raged for three days and nights without a pause. "
    "The keeper did not sleep, tending the flame while the waves crashed against the rocks below. "
    "On the fourth morning the sky cleared and the sea lay calm and silver. "
    "A small fishing boat limped into the harbour, its crew waving from the deck. "
    "They had followed the light home through the darkest nights of the year."
)
ZH = (
    "老灯塔矗立在悬崖的边缘，白色的油漆在咸涩的海风中剥落。"
    "每天傍晚，守塔人都会爬上螺旋楼梯，点亮那盏巨大的灯。"
    "远处海上的船只在夜幕降临时寻找它稳定的光束。"
    "有一年冬天，一场风暴连续肆虐了三天三夜。"
    "守塔人没有睡觉，一直守着灯火，海浪拍打着下面的岩石。"
    "第四天早上，天空放晴，大海平静得像银子一样。"
    "一艘小渔船慢慢驶进港口，船员们在甲板上挥手。"
    "他们在一年中最黑暗的夜晚里，跟着灯光回到了家。"
)
# (text, language, voice preset)
TEXTS = {"en": (EN, "en", "v2/en_speaker_6"), "zh": (ZH, "zh", "v2/zh_speaker_1")}
STAGES = ("semantic", "coarse", "fine")


class StageRows:
    """Wraps the stages functions to record how many rows each of their runs carried."""

    def __init__(self) -> None:
        from bark_core import stages

        self.rows: dict[str, list[int]] = {stage: [] for stage in STAGES}
        for stage in STAGES:
            name = f"generate_{stage}"
            setattr(stages, name, self._wrap(stage, getattr(stages, name)))

    def _wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            self.rows[stage].append(len(inputs))
            return fn(model, inputs, *args, **kwargs)

        return wrapped

    def reset(self) -> None:
        for runs in self.rows.values():
            runs.clear()


def run_once(pipe: Any, key: str, voice_id: str | None, rows: int | None, counter: StageRows) -> dict:
    """Stream one paragraph; `rows` None is the pipeline's default."""
    from bark_core.audio import to_pcm16
    from bark_core.params import GenerationParams
    from bark_core.types import SynthesisRequest

    text, language, default_voice = TEXTS[key]
    voice_id = default_voice if voice_id == "default" else voice_id
    voice = pipe.voices.get(voice_id) if voice_id else None
    request = SynthesisRequest(text, voice, GenerationParams(), seed=0, language=language)
    kwargs = {} if rows is None else {"rows_per_request": rows}
    counter.reset()
    digest = hashlib.sha256()
    chunks = []
    t0 = time.perf_counter()
    first = None
    for chunk in pipe.stream([request], **kwargs):
        first = time.perf_counter() - t0 if first is None else first
        digest.update(to_pcm16(chunk.audio))
        chunks.append(chunk)
    total = time.perf_counter() - t0
    return {
        "text": key,
        "chars": len(text),
        "voice": voice_id,
        "rows_per_request": rows,
        "chunks": len(chunks),
        "estimate_s": sum(c.estimate_s or 0.0 for c in chunks),
        "audio_s": sum(c.duration_s for c in chunks),
        "first_audio_s": first,
        "total_s": total,
        "chunk_texts": [c.text for c in chunks],
        "chunk_estimates_s": [c.estimate_s for c in chunks],
        "stage_rows": {stage: list(runs) for stage, runs in counter.rows.items()},
        "audio_sha256": digest.hexdigest(),
    }


def _scaled_cap(pipe: Any, scale: float) -> None:
    """Cap every chunk at `scale` x its estimate (instead of the estimate itself)."""
    from bark_core.params import semantic_tokens_for

    pipe.semantic_cap = lambda params, estimate_s: semantic_tokens_for(estimate_s * scale)


def _summary(runs: list[dict]) -> list[dict]:
    rows = []
    for run in runs:
        base = next(r for r in runs if r["text"] == run["text"] and r["rows_per_request"] == 1)
        stage_rows = run["stage_rows"]
        rows.append(
            {
                **run,
                "mode": "rows_per_request=1" if run["rows_per_request"] == 1 else "parallel (default)",
                "speedup": base["total_s"] / run["total_s"],
                "first_ratio": run["first_audio_s"] / base["first_audio_s"],
                "same_audio": run["audio_sha256"] == base["audio_sha256"],
                **{f"{s}_runs": "/".join(map(str, stage_rows[s])) for s in STAGES},
            }
        )
    return rows


COLUMNS = [
    ("text", "text"),
    ("mode", "mode"),
    ("chunks", "chunks"),
    ("audio_s", "audio s"),
    ("first_audio_s", "first audio s"),
    ("total_s", "total s"),
    ("speedup", "x rows=1 (total)"),
    ("first_ratio", "first audio / rows=1"),
    ("semantic_runs", "rows per semantic run"),
    ("same_audio", "same audio"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="small", choices=["tiny", "small"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--texts", default="en,zh")
    parser.add_argument("--voice", default="default", help="a preset id, 'default' (per text) or 'none'")
    parser.add_argument("--scale", type=float, default=1.0, help="cap chunks at scale x their estimate")
    parser.add_argument(
        "--parallel-rows", type=int, default=None, help="rows_per_request of the parallel run"
    )
    args = parser.parse_args(argv)

    import torch

    from bark_core.pipeline import BarkPipeline
    from bark_core.types import SynthesisRequest

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = BarkPipeline.load(str(checkpoint(args.size)))
    assert pipe.caps_demo_length, "the benchmark needs the random checkpoint's length cap"
    if args.scale != 1.0:
        _scaled_cap(pipe, args.scale)
    voice = None if args.voice == "none" else args.voice
    counter = StageRows()
    info = machine()
    list(pipe.stream([SynthesisRequest("Warm up.")]))  # first-call costs out of the figures
    runs = []
    for key in args.texts.split(","):
        for rows in (1, args.parallel_rows):
            print(f"{key}: rows_per_request={rows or 'default'} ...", flush=True)
            runs.append(run_once(pipe, key, voice, rows, counter))
            run = runs[-1]
            print(
                f"  {run['total_s']:.1f} s, first audio {run['first_audio_s']:.1f} s, "
                f"{run['chunks']} chunks, {run['audio_s']:.1f} s of audio, rows per semantic run "
                f"{run['stage_rows']['semantic']}, audio sha256 {run['audio_sha256'][:12]}",
                flush=True,
            )
    summary = _summary(runs)
    print(table(summary, COLUMNS))
    for row in summary:
        print(
            f"{row['text']} {row['mode']}: rows per run "
            + ", ".join(f"{s} {row[s + '_runs']}" for s in STAGES)
        )
    payload = {"args": vars(args), "machine": info, "runs": summary}
    print("wrote", write_json(f"longform-{args.size}", payload))


if __name__ == "__main__":
    main()
