"""Finding and loading an HF-format Bark checkpoint: a hub id (pinned revision) or a directory.

transformers is the loader (`BarkModel.from_pretrained`: safetensors first, a torch pickle only
through its `weights_only=True` path, one file or shards with an index, no remote code); we
insist that every weight in the file matches a parameter and vice versa, then move the
sub-models' tensors into our own modules. The causal-mask buffers are not weights: a file
without them (as other converters write) loads, and they are rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ModelNotFoundError
from .hub import CONFIG_PATTERNS, DEFAULT_MODEL, WEIGHT_PATTERNS, hub_offline
from .maker import MAKER_VERSION, MARKER_FILE, make_checkpoint

log = logging.getLogger(__name__)

__all__ = [  # DEFAULT_MODEL lives in bark_core.hub (torch-free) and is re-exported here
    "DEFAULT_MODEL",
    "LoadedCheckpoint",
    "demo_checkpoint_dir",
    "has_weights",
    "load_checkpoint",
    "resolve_checkpoint",
    "submodel_state",
]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_MASK_BUFFER = re.compile(r"^layers\.\d+\.attn\.bias$")  # transformers' causal-mask buffer
_MASK_KEY = re.compile(r"^(semantic|coarse_acoustics)\.layers\.\d+\.attn\.bias$")
DEMO_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bark-serve"


def demo_checkpoint_dir() -> Path:
    """The built-in tiny random checkpoint, made once and cached. Its audio is noise.

    The directory is named by the maker's version, so a cache made by an older maker is
    never served again."""
    target = DEMO_CACHE / f"tiny-random-v{MAKER_VERSION}"
    if not (target / MARKER_FILE).is_file():
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        make_checkpoint(tmp, size="tiny", seed=0)
        try:
            tmp.rename(target)
        except OSError:  # another process made it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_checkpoint(model: str, revision: str | None = None) -> Path:
    """A local directory as is; otherwise download (or find in the HF cache) a hub repo."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a directory but holds no config.json")
        return path
    if not _HUB_ID.match(model):
        raise ModelNotFoundError(
            f"no checkpoint directory at {model!r}, and it is not a hub id like 'suno/bark-small'"
        )
    return _download(model, revision)


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hint = (
        f"Set BARK_MODEL (or --model) to a local checkpoint directory, run "
        f"`bark-tts download {repo_id}` where the hub is reachable, or make a random-weight "
        f"one with `bark-tts make-checkpoint DIR`."
    )
    try:
        local = _snapshot(repo_id, revision)
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelNotFoundError(f"{repo_id}@{revision or 'main'} does not exist on the hub. {hint}") from exc
    except LocalEntryNotFoundError as exc:
        why = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub cannot be reached"
        raise ModelNotFoundError(
            f"{repo_id} is not in the local Hugging Face cache and {why}. {hint}"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotFoundError(f"could not download {repo_id}: {exc}. {hint}") from exc
    if not has_weights(local):
        raise CheckpointError(
            f"{repo_id}@{revision or 'main'} holds no weights transformers can load "
            "(model.safetensors or pytorch_model.bin, or a sharded index of either)"
        )
    return local


def _snapshot(repo_id: str, revision: str | None) -> Path:
    """The config, tokenizer and preset files, then one kind of weights: safetensors when the
    repo has them, else the torch pickle (what suno/bark-small holds). Never the original
    code's text.pt/coarse.pt/fine.pt that suno/bark also carries."""
    from huggingface_hub import snapshot_download

    local = Path("")
    for weights in WEIGHT_PATTERNS:
        local = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=[*CONFIG_PATTERNS, *weights])
        )
        if has_weights(local):
            break
    return local


def has_weights(root: Path) -> bool:
    """Whether `root` holds weights transformers loads: one file, or an index of shards."""
    return any((root / name).is_file() for group in WEIGHT_PATTERNS for name in group if "*" not in name)


@dataclass
class LoadedCheckpoint:
    root: Path
    bark: Any  # transformers.BarkModel, float32 on the CPU
    tokenizer: Any  # transformers.BertTokenizer
    is_random_demo: bool


def load_checkpoint(root: Path) -> LoadedCheckpoint:
    """Load weights, tokenizer and marker; missing or unexpected weights are an error naming them."""
    import torch
    from transformers import BarkModel, BertTokenizer

    try:
        loaded: Any = BarkModel.from_pretrained(
            root, output_loading_info=True, dtype=torch.float32, trust_remote_code=False
        )
        bark, info = loaded
        tokenizer = BertTokenizer.from_pretrained(root)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot load the checkpoint in {root}: {exc}") from exc
    missing = {str(k) for k in info.get("missing_keys", ())}
    masks = {k for k in missing if _MASK_KEY.match(k)}
    _check_keys(root, {**info, "missing_keys": missing - masks})
    _rebuild_masks(bark, masks)
    marker = root / MARKER_FILE
    is_random = marker.is_file() and bool(json.loads(marker.read_text()).get("random_weights"))
    return LoadedCheckpoint(root, bark.eval(), tokenizer, is_random)


def _check_keys(root: Path, info: dict[str, Any]) -> None:
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind, ()))
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            problems.append(f"{kind.replace('_', ' ')}: {shown}")
    if problems:
        raise CheckpointError(f"checkpoint {root} does not match Bark's weights: " + "; ".join(problems))


def _rebuild_masks(bark: Any, keys: set[str]) -> None:
    """The causal masks a file left out: lower-triangular, as the attention builds them."""
    import torch

    for key in keys:
        attn = bark.get_submodule(key.removesuffix(".bias"))
        size = attn.bias.shape[-1]
        attn.bias = torch.tril(torch.ones((size, size), dtype=torch.bool)).view(1, 1, size, size)
    if keys:
        log.info("rebuilt %d causal-mask buffers the checkpoint does not store", len(keys))


def submodel_state(module: Any) -> dict[str, Any]:
    """A transformers sub-model's weights without its causal-mask buffers."""
    return {k: v for k, v in module.state_dict().items() if not _MASK_BUFFER.match(k)}
