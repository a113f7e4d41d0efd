"""The files of suno/bark and suno/bark-small as transformers 4.31 converted them.

The checkpoint maker imitates them (no machine here can download the real ones), so the loader
is tested on what the first real user will load: the weights under 4.31's names, every
sub-config written in full with the generic fields `PretrainedConfig` and `GenerationConfig`
carried then, and the tokenizer files of bert-base-multilingual-cased.
"""

from __future__ import annotations

import re
from typing import Any

LEGACY_TRANSFORMERS_VERSION = "4.31.0.dev0"
LEGACY_NAME = "ylacombe/bark-small"  # where the conversion ran; kept in repo_or_path

# What 4.31's `PretrainedConfig.to_dict()` wrote into each config beside the model's own fields.
LEGACY_CONFIG_FIELDS: dict[str, Any] = {
    "return_dict": True,
    "output_hidden_states": False,
    "output_attentions": False,
    "torchscript": False,
    "torch_dtype": None,
    "use_bfloat16": False,
    "tf_legacy_loss": False,
    "pruned_heads": {},
    "tie_word_embeddings": True,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "cross_attention_hidden_size": None,
    "add_cross_attention": False,
    "tie_encoder_decoder": False,
    "max_length": 20,
    "min_length": 0,
    "do_sample": False,
    "early_stopping": False,
    "num_beams": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "num_return_sequences": 1,
    "chunk_size_feed_forward": 0,
    "output_scores": False,
    "return_dict_in_generate": False,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "remove_invalid_values": False,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "architectures": None,
    "finetuning_task": None,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "tokenizer_class": None,
    "prefix": None,
    "bos_token_id": None,
    "pad_token_id": None,
    "eos_token_id": None,
    "sep_token_id": None,
    "decoder_start_token_id": None,
    "task_specific_params": None,
    "problem_type": None,
    "_name_or_path": "",
    "transformers_version": LEGACY_TRANSFORMERS_VERSION,
}

# What 4.31's `GenerationConfig.to_dict()` wrote into each stage's generation config.
LEGACY_GENERATION_FIELDS: dict[str, Any] = {
    "max_length": 20,
    "max_new_tokens": None,
    "min_length": 0,
    "min_new_tokens": None,
    "early_stopping": False,
    "max_time": None,
    "do_sample": False,
    "num_beams": 1,
    "num_beam_groups": 1,
    "penalty_alpha": None,
    "use_cache": True,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "diversity_penalty": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "force_words_ids": None,
    "renormalize_logits": False,
    "constraints": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "remove_invalid_values": False,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_decoder_ids": None,
    "sequence_bias": None,
    "guidance_scale": None,
    "num_return_sequences": 1,
    "output_attentions": False,
    "output_hidden_states": False,
    "output_scores": False,
    "return_dict_in_generate": False,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "encoder_no_repeat_ngram_size": 0,
    "decoder_start_token_id": None,
    "generation_kwargs": {},
    "_from_model_config": False,
    "transformers_version": LEGACY_TRANSFORMERS_VERSION,
}

SUBCONFIGS = ("semantic_config", "coarse_acoustics_config", "fine_acoustics_config", "codec_config")

# bert-base-multilingual-cased's tokenizer files as the hub repos hold them (4.31's writer).
SPECIAL_TOKENS = {
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "pad_token": "[PAD]",
    "sep_token": "[SEP]",
    "unk_token": "[UNK]",
}
TOKENIZER_CONFIG = {
    "clean_up_tokenization_spaces": True,
    "do_lower_case": False,
    "model_max_length": 512,
    "strip_accents": None,
    "tokenize_chinese_chars": True,
    "tokenizer_class": "BertTokenizer",
    **SPECIAL_TOKENS,
}

# transformers 5 keeps weight norm as a parametrization; 4.31 saved torch's old weight_g/weight_v.
_WEIGHT_NORM_NAMES = {
    ".parametrizations.weight.original0": ".weight_g",
    ".parametrizations.weight.original1": ".weight_v",
}
_WEIGHT_NORM_RE = re.compile("|".join(re.escape(k) + "$" for k in _WEIGHT_NORM_NAMES))


def legacy_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """A transformers-5 BarkModel state dict under 4.31's names (same tensors, same sharing)."""
    return {_WEIGHT_NORM_RE.sub(lambda m: _WEIGHT_NORM_NAMES[m.group(0)], k): v for k, v in state.items()}


def legacy_config(config: dict[str, Any]) -> dict[str, Any]:
    """config.json as 4.31 wrote it: each sub-config in full, generic fields included (`dtype`
    was `torch_dtype` then); at the top, only what differed from PretrainedConfig's defaults."""
    out: dict[str, Any] = {
        name: {**LEGACY_CONFIG_FIELDS, **{k: v for k, v in config[name].items() if k != "dtype"}}
        for name in SUBCONFIGS
    }
    out.update(
        _name_or_path=LEGACY_NAME,
        architectures=["BarkModel"],
        initializer_range=config["initializer_range"],
        model_type="bark",
        torch_dtype="float32",
        transformers_version=LEGACY_TRANSFORMERS_VERSION,
    )
    return dict(sorted(out.items()))


def legacy_generation_config(config: dict[str, Any]) -> dict[str, Any]:
    """generation_config.json as 4.31 wrote it: each stage's dict over GenerationConfig's fields."""
    out: dict[str, Any] = {}
    for name, value in config.items():
        out[name] = {**LEGACY_GENERATION_FIELDS, **value} if isinstance(value, dict) else value
    out["transformers_version"] = LEGACY_TRANSFORMERS_VERSION
    return out
