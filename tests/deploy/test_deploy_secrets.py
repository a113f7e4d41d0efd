"""Safe defaults: no deployment file ships a working API key, and none publishes the API open.

Every example secret holds one placeholder that the API refuses at start (the Settings reject
any key containing `replace-me`), so a stack copied unedited never serves with a key anyone
can read here; compose will not start without BARK_API_KEYS.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from app.core.settings import Settings

from .deploy_support import REPO, MissingVariable, compose_environment, config_data, load_compose

PLACEHOLDER = "replace-me-with-a-long-random-secret"
# Where an example key may be written: the committed example env file and the base literal.
EXAMPLES = ("deploy/overlays/gpu/api-keys.env.example", "deploy/base/kustomization.yaml")
Docs = dict[str, list[dict[str, Any]]]


def keys_written_in(text: str) -> list[str]:
    return re.findall(r"^\s*(?:-\s*)?BARK_API_KEYS=(.*)$", text, re.M)


def test_every_example_secret_is_the_placeholder() -> None:
    for name in EXAMPLES:
        assert keys_written_in((REPO / name).read_text()) == [PLACEHOLDER], name
    # ...and no other deployment file writes a key at all
    others = [p for p in (REPO / "deploy").rglob("*") if p.is_file() and p.suffix != ".md"]
    others += [REPO / "docker-compose.yml", REPO / "docker-compose.cpu.yml", REPO / "Dockerfile"]
    for path in others:
        if str(path.relative_to(REPO)) not in EXAMPLES:
            assert not keys_written_in(path.read_text()), path


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_an_unedited_stack_carries_the_placeholder(rendered: Docs, overlay: str) -> None:
    # render() copies the gpu example to api-keys.env as an operator who forgot to edit it would
    assert config_data(rendered[overlay], "bark-secrets") == {"BARK_API_KEYS": PLACEHOLDER}


def test_the_settings_refuse_the_placeholder() -> None:
    with pytest.raises(ValidationError, match="replace-me"):
        Settings(api_keys=[PLACEHOLDER])


def test_compose_refuses_to_start_without_api_keys() -> None:
    for env in ({}, {"BARK_API_KEYS": ""}):
        with pytest.raises(MissingVariable, match="BARK_API_KEYS"):
            load_compose("docker-compose.yml", env=env)


def test_compose_gives_the_api_the_operators_keys() -> None:
    for files in (("docker-compose.yml",), ("docker-compose.yml", "docker-compose.cpu.yml")):
        api = load_compose(*files, env={"BARK_API_KEYS": "k1,k2"})["services"]["api"]
        assert compose_environment(api)["BARK_API_KEYS"] == "k1,k2"
        assert api["ports"], "the api is the service compose publishes"
