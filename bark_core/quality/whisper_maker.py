"""A random-weight Whisper checkpoint in the hub layout, for tests and benchmarks.

No machine here can download Whisper's weights. This writes what `WhisperProcessor` and
`WhisperForConditionalGeneration.from_pretrained` load offline: config.json,
generation_config.json (the ids `generate` needs for `language=`/`task=`), model.safetensors,
a byte-level BPE tokenizer (the 256 byte symbols, no merges, Whisper's special tokens) and the
feature extractor's preprocessor_config.json. `tiny` is for tests (a few kB of weights);
`whisper-tiny` has openai/whisper-tiny's shape (39 M parameters, 51,865 logits a step), so a
benchmark pays what the real tiny model costs. Random weights never emit EOS: cap
`max_new_tokens`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Size = Literal["tiny", "whisper-tiny"]

# Whisper's prompt tokens; the generation config maps languages and tasks to their ids.
SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
_SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(d_model=16, layers=1, heads=2, ffn=32, text_tokens=256, vocab=265, target=64),
    "whisper-tiny": dict(
        d_model=384, layers=4, heads=6, ffn=1536, text_tokens=50_257, vocab=51_865, target=448
    ),
}


def _tokenizer(text_tokens: int):
    from transformers import WhisperTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    symbols += [f"<filler{i}>" for i in range(text_tokens - len(symbols))]  # never produced
    tokenizer = WhisperTokenizer(vocab={s: i for i, s in enumerate(symbols)}, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIALS[1:])})
    return tokenizer


def _generation_config(ids: dict[str, int], max_length: int):
    from transformers import GenerationConfig

    return GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        is_multilingual=True,
        max_length=max_length,
    )


def make_whisper_checkpoint(directory: str | Path, size: Size = "tiny", seed: int = 0) -> Path:
    """Write the checkpoint to `directory` (created) and return it."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    shape = _SHAPES[size]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(shape["text_tokens"])
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    eot = ids["<|endoftext|>"]
    config = WhisperConfig(
        vocab_size=shape["vocab"],
        num_mel_bins=80,
        d_model=shape["d_model"],
        encoder_layers=shape["layers"],
        decoder_layers=shape["layers"],
        encoder_attention_heads=shape["heads"],
        decoder_attention_heads=shape["heads"],
        encoder_ffn_dim=shape["ffn"],
        decoder_ffn_dim=shape["ffn"],
        max_source_positions=1500,  # 30 s of 10 ms frames, halved by the conv stem
        max_target_positions=shape["target"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = _generation_config(ids, shape["target"])
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out)
    return out
