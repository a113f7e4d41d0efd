"""Greedy tokens of every stage against suno-ai/bark 0.1.5 (the original code) on one checkpoint.

The original's models are built from the same tiny checkpoint through the 1:1 name map, put
into `bark.generation.models` so it downloads nothing. Its generation.py imports `encodec`
at the top; only the GPT stages run here, so a stub module stands in for it.
"""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest
import torch

from bark_core import stages
from bark_core.constants import SEMANTIC_PAD_TOKEN, semantic_token_cap
from bark_core.modules import CausalGPT, FineGPT
from bark_core.params import GenerationParams
from bark_core.types import SynthesisRequest

TEXT = "Hello there, my dog is cute."

_RENAMES = [
    (r"^input_embeds_layers\.", "transformer.wtes."),
    (r"^input_embeds_layer\.", "transformer.wte."),
    (r"^position_embeds_layer\.", "transformer.wpe."),
    (r"^layers\.(\d+)\.layernorm_1\.", r"transformer.h.\1.ln_1."),
    (r"^layers\.(\d+)\.layernorm_2\.", r"transformer.h.\1.ln_2."),
    (r"^layers\.(\d+)\.attn\.att_proj\.", r"transformer.h.\1.attn.c_attn."),
    (r"^layers\.(\d+)\.attn\.out_proj\.", r"transformer.h.\1.attn.c_proj."),
    (r"^layers\.(\d+)\.mlp\.in_proj\.", r"transformer.h.\1.mlp.c_fc."),
    (r"^layers\.(\d+)\.mlp\.out_proj\.", r"transformer.h.\1.mlp.c_proj."),
    (r"^layernorm_final\.", "transformer.ln_f."),
]


def _to_original_names(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for pattern, repl in _RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _original_gpt(ours: CausalGPT | FineGPT, state: dict | None = None) -> torch.nn.Module:
    """The original's model with our model's weights (or `state`, in our names)."""
    from bark.model import GPT, GPTConfig
    from bark.model_fine import FineGPT as OriginalFineGPT
    from bark.model_fine import FineGPTConfig

    s = ours.shape
    shape = {
        "block_size": s.block_size,
        "input_vocab_size": s.input_vocab_size,
        "output_vocab_size": s.output_vocab_size,
        "n_layer": s.num_layers,
        "n_head": s.num_heads,
        "n_embd": s.hidden_size,
        "dropout": 0.0,
        "bias": s.bias,
    }
    if isinstance(ours, FineGPT):
        model: torch.nn.Module = OriginalFineGPT(FineGPTConfig(**shape, n_codes_total=8, n_codes_given=1))
    else:
        model = GPT(GPTConfig(**shape))
    model.load_state_dict(_to_original_names(state or ours.state_dict()), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def original(pipeline):  # type: ignore[no-untyped-def]
    """The original code, holding the pipeline's weights (a PackedLinear keeps its plain
    `weight` and `bias` beside the packed copy, so the state dict is nn.Linear's)."""
    pytest.importorskip("funcy")
    sys.modules.setdefault("encodec", types.SimpleNamespace(EncodecModel=None))
    gen = pytest.importorskip("bark.generation")
    gen.models["text"] = {"model": _original_gpt(pipeline.semantic), "tokenizer": pipeline.tokenizer}
    gen.models["coarse"] = _original_gpt(pipeline.coarse)
    gen.models["fine"] = _original_gpt(pipeline.fine)
    yield gen
    gen.models.clear()


def _ours(pipeline, voice, max_duration_s):  # type: ignore[no-untyped-def]
    params = GenerationParams.greedy(max_duration_s=max_duration_s)
    [chunk] = list(pipeline.stream([SynthesisRequest(TEXT, voice, params, seed=0)]))
    return chunk


def _theirs(gen, history, max_duration_s):  # type: ignore[no-untyped-def]
    # greedy in the original: top_k=1 with any positive temperature; fine with temp=None
    semantic = gen.generate_text_semantic(
        TEXT,
        history_prompt=history,
        temp=1.0,
        top_k=1,
        min_eos_p=None,
        silent=True,
        max_gen_duration_s=max_duration_s,
        use_kv_caching=True,
    )
    coarse = gen.generate_coarse(
        semantic, history_prompt=history, temp=1.0, top_k=1, silent=True, use_kv_caching=True
    )
    fine = gen.generate_fine(coarse, history_prompt=history, temp=None)
    return semantic, coarse, fine


@pytest.mark.parametrize("voice_id", [None, "v2/en_speaker_6"])
def test_greedy_tokens_equal_the_original(pipeline, original, voice_id):  # type: ignore[no-untyped-def]
    voice = pipeline.voices.get(voice_id) if voice_id else None
    history = voice.to_arrays() if voice else None
    # 2 s: 100 semantic tokens, 300 coarse tokens -> five 60-step coarse windows
    ours = _ours(pipeline, voice, 2.0)
    semantic, coarse, fine = _theirs(original, history, 2.0)
    assert len(semantic) == 100
    np.testing.assert_array_equal(ours.semantic, semantic)
    np.testing.assert_array_equal(ours.coarse, coarse)
    np.testing.assert_array_equal(ours.fine, fine)
    assert ours.fine.shape == (8, coarse.shape[1])


@pytest.mark.parametrize("voice_id", [None, "v2/en_speaker_1"])
@pytest.mark.parametrize("frames", [1300, 2100])
def test_fine_stage_over_several_windows_equals_the_original(pipeline, original, voice_id, frames):  # type: ignore[no-untyped-def]
    """More than 1024 frames: the fine stage's loop runs 3 to 4 times (history 0 or 512)."""
    coarse = np.random.default_rng(frames).integers(0, 1024, (2, frames))
    voice = pipeline.voices.get(voice_id) if voice_id else None
    [ours] = stages.generate_fine(
        pipeline.fine, [coarse], [voice.fine if voice else None], [stages.RowControl(temp=0.0)]
    )
    theirs = original.generate_fine(coarse, history_prompt=voice.to_arrays() if voice else None, temp=None)
    np.testing.assert_array_equal(ours, theirs)


# ----------------------------------------------------------------------------- stage by stage


def _stages(pipeline, voice, cap, temps, seed=0, min_eos_p=None, top_k=None, top_p=None, semantic=None):  # type: ignore[no-untyped-def]
    """Our three token stages on one row, all drawing from one generator seeded `seed` (as
    the pipeline does per request)."""
    gen = torch.Generator().manual_seed(seed)

    def ctl(temp: float) -> stages.RowControl:
        return stages.RowControl(temp=temp, top_k=top_k, top_p=top_p, generator=gen)

    text = pipeline.encode_text(TEXT)
    [sem] = stages.generate_semantic(
        semantic or pipeline.semantic,
        [text],
        [voice.semantic if voice else None],
        [ctl(temps[0])],
        [min_eos_p],
        [cap],
    )
    coarse_hist = (voice.semantic, voice.coarse) if voice else None
    [coarse] = stages.generate_coarse(pipeline.coarse, [sem], [coarse_hist], [ctl(temps[1])])
    [fine] = stages.generate_fine(pipeline.fine, [coarse], [voice.fine if voice else None], [ctl(temps[2])])
    return sem, coarse, fine


def _original(gen, history, duration, temps, seed=0, min_eos_p=None, top_k=None, top_p=None):  # type: ignore[no-untyped-def]
    """The original's three stages after one torch.manual_seed: its draws come from the global
    generator in the same order as ours from the row's (one multinomial draw per step)."""
    torch.manual_seed(seed)

    def knobs(temp: float) -> dict:
        # greedy in the original: top_k=1 with any positive temperature
        return {"temp": 1.0, "top_k": 1} if temp == 0 else {"temp": temp, "top_k": top_k, "top_p": top_p}

    semantic = gen.generate_text_semantic(
        TEXT,
        history_prompt=history,
        min_eos_p=min_eos_p,
        silent=True,
        max_gen_duration_s=duration,
        use_kv_caching=True,
        **knobs(temps[0]),
    )
    coarse = gen.generate_coarse(
        semantic, history_prompt=history, silent=True, use_kv_caching=True, **knobs(temps[1])
    )
    fine = gen.generate_fine(coarse, history_prompt=history, temp=temps[2] or None)
    return semantic, coarse, fine


def _assert_same(ours, theirs) -> None:  # type: ignore[no-untyped-def]
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("voice_id", [None, "v2/en_speaker_6"])
@pytest.mark.parametrize(("duration", "n_tokens"), [(0.25, 13), (0.6, 30), (1.0, 50), (2.0, 100)])
def test_duration_stops_the_semantic_stage_as_the_original(pipeline, original, voice_id, duration, n_tokens):  # type: ignore[no-untyped-def]
    """bark 0.1.5 stops once the summed 1/49.9 s per token exceeds the duration (13 tokens at
    0.25 s, where round(0.25 * 49.9) would be 12)."""
    voice = pipeline.voices.get(voice_id) if voice_id else None
    assert semantic_token_cap(duration) == n_tokens
    ours = _stages(pipeline, voice, semantic_token_cap(duration), (0.0, 0.0, 0.0))
    theirs = _original(original, voice.to_arrays() if voice else None, duration, (0.0, 0.0, 0.0))
    assert len(theirs[0]) == n_tokens
    _assert_same(ours, theirs)


def test_batch_rows_with_different_voices_equal_each_row_alone(pipeline):  # type: ignore[no-untyped-def]
    texts = ["Hello there, my dog is cute.", "A second, longer line of text for the batch.", "Hi."]
    voices = [pipeline.voices.get("v2/en_speaker_6"), None, pipeline.voices.get("v2/de_speaker_3")]
    durations = [1.5, 2.5, 0.6]  # different lengths: rows finish at different steps
    requests = [
        SynthesisRequest(t, v, GenerationParams.greedy(max_duration_s=d), seed=i)
        for i, (t, v, d) in enumerate(zip(texts, voices, durations, strict=True))
    ]
    batch = {c.request_index: c for c in pipeline.stream(requests)}
    for i, request in enumerate(requests):
        [alone] = list(pipeline.stream([request]))
        np.testing.assert_array_equal(batch[i].semantic, alone.semantic)
        np.testing.assert_array_equal(batch[i].coarse, alone.coarse)
        np.testing.assert_array_equal(batch[i].fine, alone.fine)
        np.testing.assert_allclose(batch[i].audio, alone.audio, atol=1e-6)


def test_codec_matches_transformers_encodec(pipeline, tiny_checkpoint):  # type: ignore[no-untyped-def]
    from transformers import BarkModel

    bark = BarkModel.from_pretrained(tiny_checkpoint).eval()
    codes = np.random.default_rng(0).integers(0, 1024, (8, 40))
    ours = pipeline.decode(codes)
    with torch.inference_mode():
        theirs = bark.codec_decode(torch.from_numpy(codes)[None]).squeeze().numpy()
    assert ours.shape == (40 * 320,)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


# ----------------------------------------------------------------------------- sampled

DEFAULT_TEMPS = (0.7, 0.7, 0.5)  # the original's generate_audio defaults, as GenerationParams'


@pytest.mark.parametrize("voice_id", [None, "v2/en_speaker_6"])
@pytest.mark.parametrize(
    ("seed", "top_k", "top_p"),
    [(0, None, None), (1, None, None), (2, 50, None), (3, None, 0.9), (4, 20, 0.8)],
)
def test_sampled_tokens_equal_the_original_seeded_alike(pipeline, original, voice_id, seed, top_k, top_p):  # type: ignore[no-untyped-def]
    """Both draw once per step (once per position in the fine stage) with torch.multinomial:
    our row's generator seeded s gives the original's global generator after manual_seed(s)."""
    voice = pipeline.voices.get(voice_id) if voice_id else None
    history = voice.to_arrays() if voice else None
    knobs = {"seed": seed, "min_eos_p": 0.2, "top_k": top_k, "top_p": top_p}
    ours = _stages(pipeline, voice, semantic_token_cap(1.0), DEFAULT_TEMPS, **knobs)
    theirs = _original(original, history, 1.0, DEFAULT_TEMPS, **knobs)
    _assert_same(ours, theirs)
    greedy = _stages(pipeline, voice, semantic_token_cap(1.0), (0.0, 0.0, 0.0))
    assert all(not np.array_equal(a, b) for a, b in zip(ours, greedy, strict=True))  # it did sample


@pytest.mark.parametrize("voice_id", [None, "v2/en_speaker_6"])
def test_pipeline_defaults_sample_as_the_original(pipeline, original, voice_id):  # type: ignore[no-untyped-def]
    """The service's defaults end to end: a request's seed, temperatures and min_eos_p reach
    the stages as the original's generate_audio would use them (2 s: both caps are 100)."""
    voice = pipeline.voices.get(voice_id) if voice_id else None
    [chunk] = list(
        pipeline.stream([SynthesisRequest(TEXT, voice, GenerationParams(max_duration_s=2.0), seed=11)])
    )
    theirs = _original(
        original, voice.to_arrays() if voice else None, 2.0, DEFAULT_TEMPS, seed=11, min_eos_p=0.2
    )
    _assert_same((chunk.semantic, chunk.coarse, chunk.fine), theirs)


# ----------------------------------------------------------------------------- EOS


def _eos_semantic(pipeline, direction_seed: int, scale: float) -> CausalGPT:  # type: ignore[no-untyped-def]
    """A copy of the semantic model whose head's EOS row is `scale` times a random unit
    direction: its logit swings with the hidden state, so EOS wins (or passes min_eos_p) at
    some later step, where the random checkpoint itself never ends."""
    state = {k: v.clone() for k, v in pipeline.semantic.state_dict().items()}
    u = torch.randn(
        pipeline.semantic.shape.hidden_size, generator=torch.Generator().manual_seed(direction_seed)
    )
    state["lm_head.weight"][SEMANTIC_PAD_TOKEN] = scale * u / u.norm()
    model = CausalGPT(pipeline.semantic.shape)
    model.load_state_dict(state, strict=True)
    return model.eval()


EOS_CAP_S = 1.2  # 60 tokens


@pytest.mark.parametrize(
    ("direction_seed", "scale", "temp", "min_eos_p", "seed"),
    [
        (4, 1.0, 0.0, None, 0),  # greedy: EOS is the argmax
        (2, 3.0, 0.7, None, 1),  # sampled: EOS is drawn
        (2, 3.0, 0.7, 0.2, 0),  # sampled: P(EOS) passes min_eos_p (drawn: a semantic id)
        (3, 3.0, 0.7, 0.2, 0),
    ],
)
def test_semantic_eos_ends_the_row_as_in_the_original(
    pipeline, original, direction_seed, scale, temp, min_eos_p, seed
):  # type: ignore[no-untyped-def]
    model = _eos_semantic(pipeline, direction_seed, scale)
    cap = semantic_token_cap(EOS_CAP_S)

    def ours(threshold: float | None) -> np.ndarray:
        ctl = stages.RowControl(temp=temp, generator=torch.Generator().manual_seed(seed))
        [tokens] = stages.generate_semantic(
            model, [pipeline.encode_text(TEXT)], [None], [ctl], [threshold], [cap]
        )
        return tokens

    text_model = original.models["text"]["model"]
    original.models["text"]["model"] = _original_gpt(model)
    try:
        torch.manual_seed(seed)
        theirs = _original_semantic(original, temp, min_eos_p)
    finally:
        original.models["text"]["model"] = text_model
    assert 0 < len(theirs) < cap  # it ended by EOS, after some tokens
    np.testing.assert_array_equal(ours(min_eos_p), theirs)
    if min_eos_p is not None:
        assert len(ours(None)) > len(theirs)  # without min_eos_p the row goes on: the threshold ended it


def _original_semantic(gen, temp: float, min_eos_p: float | None) -> np.ndarray:  # type: ignore[no-untyped-def]
    knobs = {"temp": 1.0, "top_k": 1} if temp == 0 else {"temp": temp}
    return gen.generate_text_semantic(
        TEXT, min_eos_p=min_eos_p, silent=True, max_gen_duration_s=EOS_CAP_S, use_kv_caching=True, **knobs
    )
