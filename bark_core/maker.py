"""Write a random-weight Bark checkpoint serialized as suno/bark-small really is.

No machine of ours can download real weights, so every test, demo and benchmark runs on a
checkpoint made here: the real vocabulary sizes, a BERT-style tokenizer, the hub's presets
(v2, v1 and `announcer`) with realistic shapes and dtypes, and a codec whose audio is
zero-mean noise at a listenable level. Two layouts:
- `hub` (default): what transformers 4.31 wrote for the hub (bark_core.hub_files): one
  `pytorch_model.bin`, old weight-norm names, mask and quantizer buffers, tied fine heads
  stored twice over one storage, legacy config fields, all four tokenizer files.
- `safetensors`: transformers 5's own `save_pretrained` (model.safetensors, 5.x names).
`transformers.BarkModel.from_pretrained` and `BarkProcessor.from_pretrained` load both.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import hub_files
from .constants import (
    COARSE_RATE_HZ,
    COARSE_VOCAB,
    CODEBOOK_SIZE,
    FINE_VOCAB,
    N_FINE_CODEBOOKS,
    SEMANTIC_INPUT_VOCAB,
    SEMANTIC_OUTPUT_VOCAB,
    SEMANTIC_RATE_HZ,
    SEMANTIC_VOCAB_SIZE,
)
from .voices import ANNOUNCER, BUILTIN_VOICE_IDS, INDEX_FILE

Size = Literal["tiny", "small"]
Layout = Literal["hub", "safetensors"]
LAYOUTS: tuple[Layout, ...] = ("hub", "safetensors")
MARKER_FILE = "bark_serve_checkpoint.json"
# Bumped whenever what the maker writes changes, so cached checkpoints are made again.
MAKER_VERSION = 2
# The decoded RMS of random codes the codec is scaled to: -20 dBFS, clearly audible noise.
CODEC_TARGET_RMS = 0.1


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


def _calibrate_codec(codec: Any, seed: int) -> None:
    """Make random codes decode to zero-mean noise at CODEC_TARGET_RMS.

    transformers' random init leaves biases in every decoder conv, which add up to a DC offset
    far above the signal (mean 0.14 against an RMS of 0.012 about it: it sounds like silence).
    Without biases the output has no offset; the last conv is then scaled to the target level."""
    import torch

    for layer in codec.quantizer.layers:
        # EnCodec initialises its codebooks to zeros, so every code would decode to the same
        # sound; give them values so that different tokens give different audio.
        layer.codebook.embed.normal_(0.0, 1.0)
        layer.codebook.embed_avg.copy_(layer.codebook.embed)
        layer.codebook.cluster_size.fill_(1.0)
    convs = [m for m in codec.decoder.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.ConvTranspose1d)]
    for conv in convs:
        if conv.bias is not None:
            conv.bias.zero_()
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, CODEBOOK_SIZE, (N_FINE_CODEBOOKS, 1, 150), generator=generator)
    rms = float(codec.decoder(codec.quantizer.decode(codes)).pow(2).mean().sqrt())
    last = convs[-1]
    last.weight = last.weight.detach() * (CODEC_TARGET_RMS / rms)  # weight norm: sets g and v


def _build_model(size: Size, seed: int) -> Any:
    """A random BarkModel (float32, eval) of `size`, the same for the same seed."""
    import torch
    from transformers import BarkConfig, BarkModel

    torch.manual_seed(seed)
    model = BarkModel(BarkConfig(**_bark_config(SHAPES[size]))).eval()
    with torch.no_grad():
        _calibrate_codec(model.codec_model, seed)
    return model


def _save_hub_weights(model: Any, out: Path) -> None:
    """One torch pickle of the whole state dict under 4.31's names, as the hub holds it."""
    import torch

    state: dict[str, Any] = model.state_dict()
    # state_dict() yields the tied fine heads beside their embeddings, over one storage each:
    # torch.save keeps that sharing, as in the real file.
    torch.save(hub_files.legacy_state_dict(state), out / "pytorch_model.bin")
    config = hub_files.legacy_config(model.config.to_dict())
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = hub_files.legacy_generation_config(GENERATION_CONFIG)
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")


def _write_tokenizer(out: Path, layout: Layout) -> None:
    from transformers import BertTokenizer

    vocab = {token: i for i, token in enumerate(_vocab())}
    BertTokenizer(vocab=vocab, do_lower_case=False).save_pretrained(out)  # tokenizer.json
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if layout == "hub":
        (out / "tokenizer_config.json").write_text(json.dumps(hub_files.TOKENIZER_CONFIG, indent=2) + "\n")
        (out / "special_tokens_map.json").write_text(json.dumps(hub_files.SPECIAL_TOKENS, indent=2) + "\n")


def _preset_arrays(voice_id: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random prompts with the real presets' lengths and dtypes: int64 semantic and coarse,
    int32 fine; uint16 throughout for `announcer`, as in the original's files."""
    n_sem = 499 if voice_id == ANNOUNCER else int(rng.integers(192, 698))
    n_frames = round(n_sem * COARSE_RATE_HZ / SEMANTIC_RATE_HZ)  # as the real presets: 499 -> 750
    arrays: dict[str, np.ndarray] = {
        "semantic_prompt": rng.integers(0, SEMANTIC_VOCAB_SIZE, n_sem, dtype=np.int64),
        "coarse_prompt": rng.integers(0, CODEBOOK_SIZE, (2, n_frames), dtype=np.int64),
        "fine_prompt": rng.integers(0, CODEBOOK_SIZE, (N_FINE_CODEBOOKS, n_frames)).astype(np.int32),
    }
    if voice_id == ANNOUNCER:
        return {key: value.astype(np.uint16) for key, value in arrays.items()}
    return arrays


def _write_voices(directory: Path, rng: np.random.Generator, repo_or_path: str) -> None:
    """The hub's presets, named as `BarkProcessor.save_pretrained` names them."""
    index: dict[str, dict[str, str] | str] = {"repo_or_path": repo_or_path}
    for voice_id in BUILTIN_VOICE_IDS:
        entry = {}
        for key, value in _preset_arrays(voice_id, rng).items():
            rel = f"speaker_embeddings/{voice_id}_{key}.npy"
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(directory / rel, value, allow_pickle=False)
            entry[key] = rel
        index[voice_id] = entry
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2))


def make_checkpoint(
    directory: str | Path, size: Size = "tiny", seed: int = 0, layout: Layout = "hub"
) -> Path:
    """Write a random-weight checkpoint to `directory` and return its path.

    The same `size` and `seed` give the same weights and presets in either `layout`."""
    if size not in SHAPES:
        raise ValueError(f"size must be one of {sorted(SHAPES)}, got {size!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model = _build_model(size, seed)
    if layout == "hub":
        _save_hub_weights(model, out)
    else:
        model.save_pretrained(out, safe_serialization=True)
        (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
    _write_tokenizer(out, layout)
    repo_or_path = hub_files.LEGACY_NAME if layout == "hub" else str(out)
    _write_voices(out, np.random.default_rng(seed), repo_or_path)
    marker = {
        "random_weights": True,
        "size": size,
        "seed": seed,
        "layout": layout,
        "maker_version": MAKER_VERSION,
    }
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2))
    return out
