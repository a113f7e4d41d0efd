"""bark_core.hub: the facts a torch-free process shares with the loader."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bark_core.hub import DEFAULT_MODEL, hub_offline


@pytest.mark.parametrize(
    "value", ["1", "true", "TRUE", "yes", "on", "On", " 1 ", "0", "false", "no", "off", "", "2", "y"]
)
def test_hub_offline_reads_the_variable_as_huggingface_hub_does(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub.constants import _is_true

    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() == _is_true(value.strip())


def test_hub_offline_is_false_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert hub_offline() is False


def test_the_api_side_imports_stay_torch_free() -> None:
    """What the API process imports from bark_core must not pull torch in."""
    code = (
        "import sys\n"
        "from bark_core.hub import DEFAULT_MODEL, hub_offline\n"
        "from bark_core.voices import group_voices, is_builtin_voice_id\n"
        "from bark_core.params import GenerationParams\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(DEFAULT_MODEL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == DEFAULT_MODEL == "suno/bark-small"
