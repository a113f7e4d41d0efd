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


@pytest.fixture(scope="module")
def original(pipeline):  # type: ignore[no-untyped-def]
    """The original code, holding the pipeline's weights (a PackedLinear keeps its plain
    `weight` and `bias` beside the packed copy, so the state dict is nn.Linear's)."""
    pytest.importorskip("funcy")
    sys.modules.setdefault("encodec", types.SimpleNamespace(EncodecModel=None))
    gen = pytest.importorskip("bark.generation")
    from bark.model import GPT, GPTConfig
    from bark.model_fine import FineGPT, FineGPTConfig

    def gpt(ours, cls, cfg_cls, **extra):  # type: ignore[no-untyped-def]
        s = ours.shape
        cfg = cfg_cls(
            block_size=s.block_size,
            input_vocab_size=s.input_vocab_size,
            output_vocab_size=s.output_vocab_size,
            n_layer=s.num_layers,
            n_head=s.num_heads,
            n_embd=s.hidden_size,
            dropout=0.0,
            bias=s.bias,
            **extra,
        )
        model = cls(cfg)
        model.load_state_dict(_to_original_names(ours.state_dict()), strict=True)
        return model.eval()

    gen.models["text"] = {"model": gpt(pipeline.semantic, GPT, GPTConfig), "tokenizer": pipeline.tokenizer}
    gen.models["coarse"] = gpt(pipeline.coarse, GPT, GPTConfig)
    gen.models["fine"] = gpt(pipeline.fine, FineGPT, FineGPTConfig, n_codes_total=8, n_codes_given=1)
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


def test_fine_stage_over_several_windows_equals_the_original(pipeline, original):  # type: ignore[no-untyped-def]
    """More than 1024 frames with a 512-frame history: the fine stage's loop runs 3 times."""
    from bark_core import stages

    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 1024, (2, 1300))
    voice = pipeline.voices.get("v2/en_speaker_1")
    ctl = stages.RowControl(temp=0.0)
    [ours] = stages.generate_fine(pipeline.fine, [coarse], [voice.fine], [ctl])
    theirs = original.generate_fine(coarse, history_prompt=voice.to_arrays(), temp=None)
    np.testing.assert_array_equal(ours, theirs)


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
