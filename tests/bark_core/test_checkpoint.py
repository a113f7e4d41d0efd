"""Checkpoint maker and loader: the hub's real serialization, strict weights, clear errors.

The session checkpoint (tests/conftest.py) is the default `hub` layout: a pytorch_model.bin as
transformers 4.31 wrote suno/bark-small. `safetensors` is transformers 5's own layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bark_core.checkpoint import load_checkpoint, resolve_checkpoint
from bark_core.errors import CheckpointError, ModelNotFoundError
from bark_core.maker import make_checkpoint
from bark_core.params import GenerationParams
from bark_core.types import SynthesisRequest

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def st_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights and presets as the session checkpoint (seed 0), in transformers 5's layout."""
    return make_checkpoint(tmp_path_factory.mktemp("st") / "tiny", seed=0, layout="safetensors")


@pytest.fixture
def layouts(tiny_checkpoint: Path, st_checkpoint: Path) -> dict[str, Path]:
    return {"hub": tiny_checkpoint, "safetensors": st_checkpoint}


def _bin(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / "pytorch_model.bin", weights_only=True, map_location="cpu")


# ---------------------------------------------------------------------- the hub's layout


def test_hub_layout_files_are_the_hubs(tiny_checkpoint: Path) -> None:
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert "pytorch_model.bin" in names and "model.safetensors" not in names
    for name in ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        assert name in names, name
    assert json.loads((tiny_checkpoint / "special_tokens_map.json").read_text())["unk_token"] == "[UNK]"
    assert json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())["do_lower_case"] is False


def test_hub_layout_weights_use_the_old_names_and_buffers(tiny_checkpoint: Path) -> None:
    state = _bin(tiny_checkpoint)
    assert not [k for k in state if "parametrizations" in k]
    conv = "codec_model.decoder.layers.0.conv"
    assert state[f"{conv}.weight_g"].shape[1:] == (1, 1) and state[f"{conv}.weight_v"].ndim == 3
    for sub in ("semantic", "coarse_acoustics"):
        for n in (0, 1):
            mask = state[f"{sub}.layers.{n}.attn.bias"]
            assert mask.dtype == torch.bool and bool(mask[0, 0, 0, 0]) and not bool(mask[0, 0, 0, 1])
    for buffer in ("inited", "cluster_size", "embed_avg", "embed"):
        assert f"codec_model.quantizer.layers.0.codebook.{buffer}" in state
    # the fine heads are stored beside the embeddings they are tied to, over one storage each
    for i in range(7):
        head = state[f"fine_acoustics.lm_heads.{i}.weight"]
        embedding = state[f"fine_acoustics.input_embeds_layers.{i + 1}.weight"]
        assert head.untyped_storage().data_ptr() == embedding.untyped_storage().data_ptr()
    assert "fine_acoustics.input_embeds_layers.0.weight" in state


def test_hub_layout_configs_carry_the_legacy_fields(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["transformers_version"].startswith("4.31") and config["architectures"] == ["BarkModel"]
    assert "dtype" not in json.dumps(config).replace("torch_dtype", "")  # 5.x's name for it
    for name in ("semantic_config", "coarse_acoustics_config", "fine_acoustics_config", "codec_config"):
        sub = config[name]
        assert len(sub) >= 60, (name, len(sub))  # ~55 generic fields beside the model's own
        assert sub["tie_word_embeddings"] is True and sub["top_k"] == 50
        assert sub["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"} and "torch_dtype" in sub
    generation = json.loads((tiny_checkpoint / "generation_config.json").read_text())
    assert generation["semantic_config"]["eos_token_id"] == 10_000
    assert generation["semantic_config"]["max_length"] == 20  # a legacy field beside Bark's
    assert len(generation["coarse_acoustics_config"]) > 50


def test_hub_layout_presets_are_v2_v1_and_announcer(tiny_checkpoint: Path) -> None:
    index = json.loads((tiny_checkpoint / "speaker_embeddings_path.json").read_text())
    assert next(iter(index)) == "repo_or_path" and index["repo_or_path"] == "ylacombe/bark-small"
    assert len(index) - 1 == 261
    assert index["v2/en_speaker_6"]["fine_prompt"] == "speaker_embeddings/v2/en_speaker_6_fine_prompt.npy"
    assert index["en_speaker_6"]["semantic_prompt"] == "speaker_embeddings/en_speaker_6_semantic_prompt.npy"
    dtype = {k: np.load(tiny_checkpoint / v).dtype for k, v in index["en_speaker_6"].items()}
    assert dtype == {"semantic_prompt": np.int64, "coarse_prompt": np.int64, "fine_prompt": np.int32}
    assert {np.load(tiny_checkpoint / v).dtype for v in index["announcer"].values()} == {np.dtype(np.uint16)}


# ---------------------------------------------------------------------- both layouts load


@pytest.mark.parametrize("layout", ["hub", "safetensors"])
def test_transformers_loads_and_generates_with_it(layouts: dict[str, Path], layout: str) -> None:
    from transformers import BarkModel, BarkProcessor

    root = layouts[layout]
    model, info = BarkModel.from_pretrained(root, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    processor = BarkProcessor.from_pretrained(root)
    for voice in ("v2/en_speaker_6", "en_speaker_6"):
        inputs = processor("Hello there.", voice_preset=voice)
        assert int(inputs["input_ids"][0, 0]) != processor.tokenizer.unk_token_id
        torch.manual_seed(0)
        audio = model.eval().generate(**inputs, semantic_max_new_tokens=10, do_sample=False)
        assert audio.shape[0] == 1 and audio.shape[1] % 320 == 0 and audio.shape[1] > 0
    # the real vocabulary sizes
    assert model.semantic.config.input_vocab_size == 129_600
    assert model.semantic.config.output_vocab_size == 10_048
    assert model.coarse_acoustics.config.output_vocab_size == 12_096
    assert model.fine_acoustics.config.output_vocab_size == 1_056


def test_both_layouts_hold_the_same_weights(layouts: dict[str, Path]) -> None:
    hub, st = (load_checkpoint(layouts[k]).bark.state_dict() for k in ("hub", "safetensors"))
    assert hub.keys() == st.keys()
    assert all(torch.equal(hub[k], st[k]) for k in hub)


def _greedy(pipe, voice_id: str):  # type: ignore[no-untyped-def]
    request = SynthesisRequest(
        "Hello there.", pipe.voices.get(voice_id), GenerationParams.greedy(max_duration_s=0.4), seed=0
    )
    (chunk,) = pipe.stream([request])
    return chunk


def test_hub_layout_generates_what_the_safetensors_layout_does(pipeline, st_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    from bark_core.pipeline import BarkPipeline

    other = BarkPipeline.load(str(st_checkpoint))
    for voice in ("v2/en_speaker_6", "en_speaker_6", "announcer"):
        a, b = _greedy(pipeline, voice), _greedy(other, voice)
        assert len(a.semantic) == 20 and a.fine.shape == (8, 30)
        np.testing.assert_array_equal(a.semantic, b.semantic)
        np.testing.assert_array_equal(a.coarse, b.coarse)
        np.testing.assert_array_equal(a.fine, b.fine)
        np.testing.assert_array_equal(a.audio, b.audio)


def test_the_demo_audio_is_zero_mean_noise(pipeline) -> None:  # type: ignore[no-untyped-def]
    """Random codes decode to noise a listener hears, not to a DC offset."""
    codes = np.random.default_rng(3).integers(0, 1024, (8, 150))
    audio = pipeline.decode(codes)
    rms = float(np.sqrt(np.mean(audio**2)))
    assert 0.03 < rms < 0.3, rms
    assert abs(float(audio.mean())) < 0.1 * rms, (audio.mean(), rms)
    assert float(np.abs(audio).max()) < 1.0
    generated = _greedy(pipeline, "v2/en_speaker_6").audio
    assert abs(float(generated.mean())) < 0.02 and 0.03 < float(np.sqrt(np.mean(generated**2))) < 0.3


# ---------------------------------------------------------------------- HF cache, shards


def _hf_cache(src: Path, cache: Path, repo_id: str) -> Path:
    """`src` as huggingface_hub caches it: snapshots/<rev>/ of relative symlinks into blobs/."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / REVISION
    blobs.mkdir(parents=True)
    for file in sorted(p for p in src.rglob("*") if p.is_file()):
        blob = blobs / hashlib.sha256(file.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads its environment at import; point it at this cache for the test
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.mark.parametrize("layout", ["hub", "safetensors"])
def test_hub_id_loads_from_an_hf_cache_of_symlinks_offline(
    layouts: dict[str, Path], layout: str, offline_cache: Path
) -> None:
    """`suno/bark-small` with HF_HUB_OFFLINE=1, every file a symlink into blobs/."""
    from transformers import BarkModel, BarkProcessor

    from bark_core.pipeline import BarkPipeline

    snapshot = _hf_cache(layouts[layout], offline_cache, "suno/bark-small")
    assert (snapshot / "speaker_embeddings" / "v2" / "en_speaker_6_fine_prompt.npy").is_symlink()
    assert resolve_checkpoint("suno/bark-small") == snapshot
    assert resolve_checkpoint("suno/bark-small", revision=REVISION) == snapshot
    pipe = BarkPipeline.load("suno/bark-small")
    assert pipe.is_random_demo and len(pipe.voices.ids()) == 261
    assert _greedy(pipe, "announcer").fine.shape == (8, 30)
    model = BarkModel.from_pretrained("suno/bark-small", cache_dir=offline_cache)
    assert model.fine_acoustics.lm_heads[0].weight.shape == (1_056, 32)
    processor = BarkProcessor.from_pretrained("suno/bark-small", cache_dir=offline_cache)
    assert processor("Hi.", voice_preset="en_speaker_6")["history_prompt"]["fine_prompt"].shape[0] == 8


def _shard(src: Path, dst: Path) -> Path:
    """Split the checkpoint's weights in two files with an index, as transformers shards them."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    bin_file, st_file = dst / "pytorch_model.bin", dst / "model.safetensors"
    state = _bin(dst) if bin_file.exists() else load_file(st_file)
    parts: list[dict[str, torch.Tensor]] = [{}, {}]
    for key, value in state.items():
        parts[key.startswith("codec_model.")][key] = value  # tied tensors stay together
    stem, ext = ("pytorch_model", "bin") if bin_file.exists() else ("model", "safetensors")
    weight_map = {}
    for i, part in enumerate(parts, start=1):
        name = f"{stem}-{i:05d}-of-00002.{ext}"
        if ext == "bin":
            torch.save(part, dst / name)
        else:
            save_file(part, dst / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    (bin_file if ext == "bin" else st_file).unlink()
    total = sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (dst / f"{stem}.{ext}.index.json").write_text(json.dumps(index))
    return dst


@pytest.mark.parametrize("layout", ["hub", "safetensors"])
def test_sharded_weights_load(layouts: dict[str, Path], layout: str, tmp_path: Path) -> None:
    sharded = _shard(layouts[layout], tmp_path / "sharded")
    assert not (sharded / "pytorch_model.bin").exists() and not (sharded / "model.safetensors").exists()
    whole = load_checkpoint(layouts[layout]).bark.state_dict()
    parts = load_checkpoint(sharded).bark.state_dict()
    assert all(torch.equal(whole[k], parts[k]) for k in whole)


# Files of suno/bark on the hub: the original code's .pt files must not be downloaded.
SUNO_BARK_FILES = [
    ".gitattributes",
    "README.md",
    "config.json",
    "generation_config.json",
    "pytorch_model.bin",
    "text.pt",
    "coarse.pt",
    "fine.pt",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "speaker_embeddings_path.json",
    "speaker_embeddings/announcer_semantic_prompt.npy",
    "speaker_embeddings/en_speaker_6_fine_prompt.npy",
    "speaker_embeddings/v2/en_speaker_6_coarse_prompt.npy",
]
SHARDED_FILES = [
    "config.json",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model-00001-of-00002.bin",
    "pytorch_model-00002-of-00002.bin",
]


def _fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: list[str]) -> list[list[str]]:
    """snapshot_download over a repo of `files`, filtered as huggingface_hub filters them."""
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    calls: list[list[str]] = []
    target = tmp_path / "snapshot"

    def download(repo_id: str, revision: str | None = None, allow_patterns=None) -> str:  # type: ignore[no-untyped-def]
        chosen = sorted(filter_repo_objects(files, allow_patterns=allow_patterns))
        calls.append(chosen)
        for name in chosen:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_text("x")
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    return calls


def test_hub_download_takes_the_pickle_and_never_the_original_pt_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_hub(monkeypatch, tmp_path, SUNO_BARK_FILES)
    root = resolve_checkpoint("suno/bark")
    assert len(calls) == 2 and "pytorch_model.bin" not in calls[0]  # safetensors were tried first
    fetched = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert fetched == set(SUNO_BARK_FILES) - {
        ".gitattributes",
        "README.md",
        "text.pt",
        "coarse.pt",
        "fine.pt",
    }


def test_hub_download_takes_one_kind_of_shards_with_their_index(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_hub(monkeypatch, tmp_path, SHARDED_FILES)
    resolve_checkpoint("someone/bark-sharded")
    assert calls == [[n for n in sorted(SHARDED_FILES) if "pytorch_model" not in n]]


def test_a_repo_without_weights_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_hub(monkeypatch, tmp_path, ["config.json", "text.pt"])
    with pytest.raises(CheckpointError, match="holds no weights"):
        resolve_checkpoint("someone/not-bark")


# ---------------------------------------------------------------------- strict weights


def _copy_with_weights(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    shutil.copytree(src, dst)
    weights = _bin(dst)
    edit(weights)
    torch.save(weights, dst / "pytorch_model.bin")
    return dst


def test_a_file_without_mask_buffers_loads_and_rebuilds_them(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def drop_masks(w: dict) -> None:
        for key in [k for k in w if k.endswith(".attn.bias")]:
            del w[key]

    stripped = _copy_with_weights(tiny_checkpoint, tmp_path / "m", drop_masks)
    assert not [k for k in _bin(stripped) if k.endswith(".attn.bias")]
    full = load_checkpoint(tiny_checkpoint).bark
    bark = load_checkpoint(stripped).bark
    for sub in ("semantic", "coarse_acoustics"):
        for n in (0, 1):
            name = f"{sub}.layers.{n}.attn.bias"
            assert torch.equal(bark.get_buffer(name), full.get_buffer(name))


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
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in str(err.value)
