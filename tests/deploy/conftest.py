"""Fixtures of the deployment checks: the manifests rendered once per session."""

from __future__ import annotations

from typing import Any

import pytest

from .deploy_support import render


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """{"base": [...], "gpu": [...]}: every manifest `kubectl apply -k` would send."""
    scratch = tmp_path_factory.mktemp("kustomize")
    return {overlay: render(overlay, scratch) for overlay in ("base", "gpu")}
