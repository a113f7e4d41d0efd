"""Linters of the deployment files: hadolint on the Dockerfile, yamllint on every YAML file."""

from __future__ import annotations

import subprocess

from .deploy_support import REPO, tool


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_hadolint_passes_on_the_dockerfile() -> None:
    # .hadolint.yaml sets failure-threshold: info, so any finding not ignored there fails.
    result = run([tool("hadolint"), "--config", ".hadolint.yaml", "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_passes_on_every_yaml_file() -> None:
    # --strict: warnings fail too. The config ignores .venv and .git.
    result = run([tool("yamllint"), "--strict", "--config-file", ".yamllint", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_sees_the_deployment_files() -> None:
    """Guard against an ignore pattern silently skipping the files we care about."""
    result = run([tool("yamllint"), "--list-files", "--config-file", ".yamllint", "."])
    listed = {line.removeprefix("./") for line in result.stdout.split()}
    expected = {
        "docker-compose.yml",
        "docker-compose.cpu.yml",
        "deploy/base/kustomization.yaml",
        "deploy/overlays/gpu/kustomization.yaml",
        "deploy/overlays/gpu/scaledobject.yaml",
    }
    assert expected <= listed, expected - listed
