"""Write a random-weight Bark checkpoint in the exact hub layout of suno/bark-small.

No machine of ours can download real weights, so every test, demo and benchmark runs on a
checkpoint made here: the real vocabulary sizes, a BERT-style tokenizer, a hand-written
generation_config.json (transformers 5.x cannot save a BarkGenerationConfig) and voice presets
with the real ids and realistic shapes. `transformers.BarkModel.from_pretrained` and
`BarkProcessor.from_pretrained` load it as they load the hub's.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .constants import (
    COARSE_VOCAB,
    CODEBOOK_SIZE,
    FINE_VOCAB,
    N_FINE_CODEBOOKS,
    SEMANTIC_INPUT_VOCAB,
    SEMANTIC_OUTPUT_VOCAB,
    SEMANTIC_VOCAB_SIZE,
)
from .voices import LANGUAGES

Size = Literal["tiny", "small"]
MARKER_FILE = "bark_serve_checkpoint.json"


@dataclass(frozen=True)
class Shape:
    layers: int
    heads: int
    hidden: int
    codec_filters: int
    codec_hidden: int


SHAPES: dict[str, Shape] = {
    # seconds to build and run on 2 CPU cores; only the layer sizes are small
    "tiny": Shape(layers=2, heads=2, hidden=32, codec_filters=4, codec_hidden=32),
    # bark-small's architecture: 12 layers, 12 heads, 768 hidden; the real EnCodec 24 kHz
    "small": Shape(layers=12, heads=12, hidden=768, codec_filters=32, codec_hidden=128),
}

# The hub's generation_config.json for suno/bark-small, field for field.
GENERATION_CONFIG = {
    "semantic_config": {
        "eos_token_id": 10_000,
        "renormalize_logits": True,
        "max_new_tokens": 768,
        "output_scores": False,
        "return_dict_in_generate": False,
        "output_hidden_states": False,
        "output_attentions": False,
        "temperature": 1.0,
        "do_sample": False,
        "text_encoding_offset": 10_048,
        "text_pad_token": 129_595,
        "semantic_infer_token": 129_599,
        "semantic_vocab_size": 10_000,
        "max_input_semantic_length": 256,
        "semantic_rate_hz": 49.9,
        "min_eos_p": None,
    },
    "coarse_acoustics_config": {
        "renormalize_logits": True,
        "output_scores": False,
        "return_dict_in_generate": False,
        "output_hidden_states": False,
        "output_attentions": False,
        "temperature": 1.0,
        "do_sample": False,
        "coarse_semantic_pad_token": 12_048,
        "coarse_rate_hz": 75,
        "n_coarse_codebooks": 2,
        "coarse_infer_token": 12_050,
        "max_coarse_input_length": 256,
        "max_coarse_history": 630,
        "sliding_window_len": 60,
    },
    "fine_acoustics_config": {
        "temperature": 1.0,
        "max_fine_history_length": 512,
        "max_fine_input_length": 1024,
        "n_fine_codebooks": 8,
    },
    "sample_rate": 24_000,
    "codebook_size": 1024,
}

_COMMON_WORDS = (
    "the of and to a in is it you that he was for on are with as I his they be at one have "
    "this from or had by hot word but what some we can out other were all there when up use "
    "your how said an each she which do their time if will way about many then them write "
    "would like so these her long make thing see him two has look more day could go come did "
    "number sound no most people my over know water than call first who may down side been "
    "now find hello there dog cute need life world speech voice test Bark"
).split()


def _vocab() -> list[str]:
    """A BERT WordPiece vocabulary: specials, characters, continuations and common words."""
    chars = [c for c in string.printable if not c.isspace()]
    accents = list("àáâäçèéêëìíîïñòóôöùúûüßÀÁÉÈÖÜ¿¡…–—“”‘’")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += chars + accents + [f"##{c}" for c in chars + accents]
    seen = set(tokens)
    for word in _COMMON_WORDS:
        if word not in seen:
            seen.add(word)
            tokens.append(word)
    return tokens


def _bark_config(shape: Shape) -> dict:
    def sub(input_vocab: int, output_vocab: int, **extra: object) -> dict:
        return {
            "block_size": 1024,
            "input_vocab_size": input_vocab,
            "output_vocab_size": output_vocab,
            "num_layers": shape.layers,
            "num_heads": shape.heads,
            "hidden_size": shape.hidden,
            "dropout": 0.0,
            "bias": False,
            "initializer_range": 0.02,
            "use_cache": True,
            **extra,
        }

    return {
        "semantic_config": sub(SEMANTIC_INPUT_VOCAB, SEMANTIC_OUTPUT_VOCAB),
        "coarse_acoustics_config": sub(COARSE_VOCAB, COARSE_VOCAB),
        "fine_acoustics_config": sub(
            FINE_VOCAB, FINE_VOCAB, n_codes_total=8, n_codes_given=1, tie_word_embeddings=True
        ),
        "codec_config": {
            "model_type": "encodec",
            "num_filters": shape.codec_filters,
            "hidden_size": shape.codec_hidden,
            "codebook_dim": shape.codec_hidden,
            "upsampling_ratios": [8, 5, 4, 2],
            "target_bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0],
            "sampling_rate": 24_000,
            "codebook_size": CODEBOOK_SIZE,
        },
    }


def _write_voices(directory: Path, rng: np.random.Generator) -> None:
    """Presets with the real ids (v2/<lang>_speaker_<n>) and the real arrays' shapes."""
    index: dict[str, dict[str, str] | str] = {"repo_or_path": str(directory)}
    emb_dir = directory / "speaker_embeddings" / "v2"
    emb_dir.mkdir(parents=True, exist_ok=True)
    for lang in LANGUAGES:
        for n in range(10):
            voice_id = f"v2/{lang}_speaker_{n}"
            n_sem = int(rng.integers(192, 698))
            n_frames = int(n_sem * 1.503)  # 75 Hz codes per 49.9 Hz semantic tokens
            arrays = {
                "semantic_prompt": rng.integers(0, SEMANTIC_VOCAB_SIZE, n_sem, dtype=np.int64),
                "coarse_prompt": rng.integers(0, CODEBOOK_SIZE, (2, n_frames), dtype=np.int64),
                "fine_prompt": rng.integers(0, CODEBOOK_SIZE, (N_FINE_CODEBOOKS, n_frames), dtype=np.int64),
            }
            entry = {}
            for key, value in arrays.items():
                rel = f"speaker_embeddings/{voice_id}_{key}.npy"
                np.save(directory / rel, value, allow_pickle=False)
                entry[key] = rel
            index[voice_id] = entry
    (directory / "speaker_embeddings_path.json").write_text(json.dumps(index, indent=2))


def make_checkpoint(directory: str | Path, size: Size = "tiny", seed: int = 0) -> Path:
    """Write a random-weight checkpoint to `directory` and return its path."""
    # transformers is imported here, not at module import: the API process imports voices only.
    import torch
    from transformers import BarkConfig, BarkModel, BertTokenizer

    if size not in SHAPES:
        raise ValueError(f"size must be one of {sorted(SHAPES)}, got {size!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BarkConfig(**_bark_config(SHAPES[size]))
    model = BarkModel(config).eval()
    # EnCodec initialises its codebooks to zeros, so every code would decode to the same
    # sound; give them values so that different tokens give different audio.
    for layer in model.codec_model.quantizer.layers:
        layer.codebook.embed.normal_(0.0, 1.0)
        layer.codebook.embed_avg.copy_(layer.codebook.embed)
        layer.codebook.cluster_size.fill_(1.0)
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))

    vocab = {token: i for i, token in enumerate(_vocab())}
    BertTokenizer(vocab=vocab, do_lower_case=False).save_pretrained(out)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")

    _write_voices(out, np.random.default_rng(seed))
    marker = {"random_weights": True, "size": size, "seed": seed, "maker_version": 1}
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2))
    return out
