"""Checkpoint maker and loader: hub layout, strict weights, clear not-found messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bark_core.checkpoint import load_checkpoint, resolve_checkpoint
from bark_core.errors import CheckpointError, ModelNotFoundError


def test_layout_is_the_hubs(tiny_checkpoint: Path) -> None:
    for name in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "vocab.txt",
        "speaker_embeddings_path.json",
    ]:
        assert (tiny_checkpoint / name).is_file(), name
    assert (tiny_checkpoint / "speaker_embeddings/v2/en_speaker_6_semantic_prompt.npy").is_file()


def test_transformers_loads_and_generates_with_it(tiny_checkpoint: Path) -> None:
    from transformers import BarkModel, BarkProcessor

    model = BarkModel.from_pretrained(tiny_checkpoint).eval()
    processor = BarkProcessor.from_pretrained(tiny_checkpoint)
    inputs = processor("Hello there.", voice_preset="v2/en_speaker_6")
    assert int(inputs["input_ids"][0, 0]) != processor.tokenizer.unk_token_id
    torch.manual_seed(0)
    audio = model.generate(**inputs, semantic_max_new_tokens=20, do_sample=False)
    assert audio.shape[0] == 1 and audio.shape[1] % 320 == 0 and audio.shape[1] > 0
    # the real vocabulary sizes
    assert model.semantic.config.input_vocab_size == 129_600
    assert model.semantic.config.output_vocab_size == 10_048
    assert model.coarse_acoustics.config.output_vocab_size == 12_096
    assert model.fine_acoustics.config.output_vocab_size == 1_056


def _copy_with_weights(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    edit(weights)
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_missing_weight_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    key = "coarse_acoustics.layers.1.mlp.in_proj.weight"
    broken = _copy_with_weights(tiny_checkpoint, tmp_path / "m", lambda w: w.pop(key))
    with pytest.raises(CheckpointError, match=f"missing keys: {key}"):
        load_checkpoint(broken)


def test_unexpected_weight_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def add(w: dict) -> None:
        w["semantic.layers.9.extra.weight"] = torch.zeros(2)

    broken = _copy_with_weights(tiny_checkpoint, tmp_path / "m", add)
    with pytest.raises(CheckpointError, match=r"unexpected keys: semantic\.layers\.9\.extra\.weight"):
        load_checkpoint(broken)


def test_not_found_messages_say_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFoundError, match="no checkpoint directory"):
        resolve_checkpoint(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"holds no config\.json"):
        resolve_checkpoint(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match="BARK_MODEL") as err:
        resolve_checkpoint("suno/bark-small")
    assert "not in the local Hugging Face cache" in str(err.value)


def test_hub_id_loads_from_the_hf_cache_offline(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`suno/bark-small` with HF_HUB_OFFLINE: the hub path, served from a cache in its layout."""
    from bark_core.pipeline import BarkPipeline

    revision = "0" * 40
    repo = tmp_path / "hub" / "models--suno--bark-small"
    shutil.copytree(tiny_checkpoint, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hub_constants

    # huggingface_hub reads its environment at import; point it at this cache for the test
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    assert resolve_checkpoint("suno/bark-small") == repo / "snapshots" / revision
    assert resolve_checkpoint("suno/bark-small", revision=revision) == repo / "snapshots" / revision
    pipe = BarkPipeline.load("suno/bark-small")
    assert pipe.is_random_demo and "v2/en_speaker_6" in pipe.voices
