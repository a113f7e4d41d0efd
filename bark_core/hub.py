"""Facts about the Hugging Face hub that torch-free processes (the API, `bark-serve`) share.

The default model id, whether the hub is switched off, and which files of a Bark repo we fetch.
Only the standard library and huggingface_hub's constants are imported here.
"""

from __future__ import annotations

import os

from huggingface_hub.constants import ENV_VARS_TRUE_VALUES

DEFAULT_MODEL = "suno/bark-small"

# The files of a Bark repo the loader reads. Weights are fetched in a second step (see
# `WEIGHT_PATTERNS`), so a repo with safetensors never downloads its torch pickle as well.
# suno/bark also holds the original code's text.pt, coarse.pt and fine.pt: none matches.
CONFIG_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "vocab.txt",
    "special_tokens_map.json",
    "speaker_embeddings_path.json",
    "speaker_embeddings/**",
)
# Preferred first: one file or shards with their index, as transformers writes them.
WEIGHT_PATTERNS = (
    ("model.safetensors", "model-*.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json"),
)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub itself reads it (1/ON/YES/TRUE, any case)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ENV_VARS_TRUE_VALUES
