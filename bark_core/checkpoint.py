"""Finding and loading an HF-format Bark checkpoint: a hub id (pinned revision) or a directory.

transformers is the loader (`BarkModel.from_pretrained`: safetensors first, a torch pickle only
through its `weights_only=True` path, no remote code); we insist that every weight in the file
matches a parameter and vice versa, then move the sub-models' tensors into our own modules.
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
from .maker import MARKER_FILE, make_checkpoint

log = logging.getLogger(__name__)

DEFAULT_MODEL = "suno/bark-small"
# Files of the hub layout we need; the pickle only when a repo has no safetensors.
_HUB_PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer*",
    "vocab.txt",
    "special_tokens_map.json",
    "speaker_embeddings_path.json",
    "speaker_embeddings/**",
]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_MASK_BUFFER = re.compile(r"^layers\.\d+\.attn\.bias$")  # transformers' causal-mask buffer
DEMO_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bark-serve"


def demo_checkpoint_dir() -> Path:
    """The built-in tiny random checkpoint, made once and cached. Its audio is noise."""
    target = DEMO_CACHE / "tiny-random-v1"
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
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    hint = (
        f"Set BARK_MODEL (or --model) to a local checkpoint directory, run "
        f"`bark-tts download {repo_id}` where the hub is reachable, or make a random-weight "
        f"one with `bark-tts make-checkpoint DIR`."
    )
    try:
        local = Path(snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_PATTERNS))
        if not any(local.glob("*.safetensors")):
            local = Path(
                snapshot_download(
                    repo_id, revision=revision, allow_patterns=[*_HUB_PATTERNS, "pytorch_model.bin"]
                )
            )
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelNotFoundError(f"{repo_id}@{revision or 'main'} does not exist on the hub. {hint}") from exc
    except LocalEntryNotFoundError as exc:
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise ModelNotFoundError(
            f"{repo_id} is not in the local Hugging Face cache and {why}. {hint}"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotFoundError(f"could not download {repo_id}: {exc}. {hint}") from exc
    return local


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
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind, ()))
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            problems.append(f"{kind.replace('_', ' ')}: {shown}")
    if problems:
        raise CheckpointError(f"checkpoint {root} does not match Bark's weights: " + "; ".join(problems))
    marker = root / MARKER_FILE
    is_random = marker.is_file() and bool(json.loads(marker.read_text()).get("random_weights"))
    return LoadedCheckpoint(root, bark.eval(), tokenizer, is_random)


def submodel_state(module: Any) -> dict[str, Any]:
    """A transformers sub-model's weights without its causal-mask buffers."""
    return {k: v for k, v in module.state_dict().items() if not _MASK_BUFFER.match(k)}
