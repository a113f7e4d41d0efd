"""Cross-checks between the deployment files and the code they run.

Every environment variable given to a bark process is a real setting (and the whole set
validates), every command is one of our console scripts, the ports and probe paths are the
app's, and the compose file and Dockerfile have the shape the deployment relies on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from app.api.app import create_app
from app.core.settings import Settings

from .deploy_support import (
    OPERATOR_ENV,
    REPO,
    by_kind,
    compose_environment,
    config_data,
    console_scripts,
    dockerignore_allows,
    exec_form,
    load_compose,
    parse_dockerfile,
    pod_specs,
)

GPU = ("docker-compose.yml",)
CPU = ("docker-compose.yml", "docker-compose.cpu.yml")
BARK_SERVICES = ("api", "worker", "model-download")
# Variables that are not settings but belong to the image or its tools.
NOT_SETTINGS = {
    "HF_HOME",
    "PATH",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "NVIDIA_DRIVER_CAPABILITIES",
    "NVIDIA_REQUIRE_CUDA",
}
Docs = dict[str, list[dict[str, Any]]]


def setting_names() -> set[str]:
    return {f"BARK_{name.upper()}" for name in Settings.model_fields}


def image_env() -> dict[str, str]:
    return parse_dockerfile()[-1].env()


def assert_real_settings(env: dict[str, str], where: str) -> None:
    unknown = {k for k in env if k not in NOT_SETTINGS and k not in setting_names()}
    assert not unknown, f"{where}: not settings of app/core/settings.py: {sorted(unknown)}"


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings() as the process would build it from exactly this environment."""
    import os

    for key in list(os.environ):
        if key.startswith("BARK_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


# --- environment -> settings ----------------------------------------------------------------


@pytest.mark.parametrize("files", [GPU, CPU], ids=["gpu", "cpu"])
def test_compose_environment_is_made_of_valid_settings(
    files: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = load_compose(*files)["services"]
    for name in BARK_SERVICES:
        env = {**image_env(), **compose_environment(services[name])}
        assert_real_settings(env, f"{files[-1]}:{name}")
        settings_from(env, monkeypatch)  # raises on an invalid value


def test_dockerfile_env_is_made_of_real_settings() -> None:
    for stage in parse_dockerfile():
        assert_real_settings(stage.env(), f"Dockerfile stage {stage.name}")


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_manifest_environment_is_made_of_valid_settings(
    rendered: Docs, overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered[overlay]
    for kind in ("ConfigMap", "Secret"):
        for name in by_kind(docs, kind):
            data = config_data(docs, name)
            assert_real_settings(data, f"{overlay}:{kind}/{name}")
    for name, pod in pod_specs(docs).items():
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            assert_real_settings({e["name"]: "" for e in c.get("env", [])}, f"{overlay}:{name}")
    secrets = config_data(docs, "bark-secrets")
    assert set(secrets) == {"BARK_API_KEYS"}
    # the operator's step (test_deploy_secrets: an unedited stack holds a refused placeholder)
    secrets["BARK_API_KEYS"] = OPERATOR_ENV["BARK_API_KEYS"]
    env = {**image_env(), **config_data(docs, "bark-config"), **secrets}
    settings = settings_from(env, monkeypatch)
    assert settings.redis_url, "without BARK_REDIS_URL, bark-serve would embed its own Redis"


# --- commands -> console scripts --------------------------------------------------------------


def test_every_container_command_is_a_console_script(rendered: Docs) -> None:
    scripts = console_scripts()
    runtime = parse_dockerfile()[-1]
    assert exec_form(runtime.all("ENTRYPOINT")[-1]) == ["tini", "--"]
    assert exec_form(runtime.all("CMD")[-1])[0] in scripts

    for files in (GPU, CPU):
        services = load_compose(*files)["services"]
        for name in BARK_SERVICES:
            assert "entrypoint" not in services[name], "keep tini as PID 1"
            assert services[name]["command"][0] in scripts, (files, name)

    for overlay, docs in rendered.items():
        for name, pod in pod_specs(docs).items():
            if name == "bark-redis":
                continue
            for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
                # `command` would replace the entrypoint (tini); the role goes in `args`.
                assert "command" not in c, (overlay, name, c["name"])
                assert c["args"][0] in scripts, (overlay, name, c["name"])


def test_roles_get_the_command_and_the_redis_they_need() -> None:
    services = load_compose(*GPU)["services"]
    assert services["api"]["command"] == ["bark-serve"]
    assert services["worker"]["command"] == ["bark-worker"]
    assert services["model-download"]["command"][:2] == ["bark-tts", "download"]
    for name in ("api", "worker"):
        # bark-serve without it would start its own Redis and workers inside the api container.
        assert compose_environment(services[name])["BARK_REDIS_URL"].startswith("redis://redis:")


# --- ports and probe paths -> the app's routes ------------------------------------------------


def probe_paths(rendered: Docs) -> set[str]:
    paths = set()
    for docs in rendered.values():
        for pod in pod_specs(docs).values():
            for c in pod["spec"]["containers"]:
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if "httpGet" in c.get(probe, {}):
                        paths.add(c[probe]["httpGet"]["path"])
    script = (REPO / "deploy/docker/healthcheck.py").read_text()
    return paths | set(re.findall(r"/(?:healthz|readyz)\b", script))


def test_probe_paths_are_routes_of_the_app(rendered: Docs) -> None:
    """Asked of the app itself (its router tree is an implementation detail): no 404."""
    paths = probe_paths(rendered)
    assert {"/healthz", "/readyz"} <= paths
    settings = Settings(redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.5)
    with TestClient(create_app(settings)) as client:
        for path in sorted(paths):
            assert client.get(path).status_code != 404, path


def test_probes_need_no_api_key() -> None:
    """Kubelet and Docker send no credentials: health routes must answer without a key."""
    settings = Settings(redis_url="redis://127.0.0.1:1/0", api_keys=["secret"], redis_timeout_s=0.5)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503  # Redis down: unavailable, not 401
        assert client.get("/voices").status_code == 401  # and auth is on elsewhere


def test_ports_agree_across_image_compose_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = parse_dockerfile()[-1]
    port = settings_from(image_env(), monkeypatch).port
    assert runtime.all("EXPOSE") == [str(port)]
    api = load_compose(*GPU)["services"]["api"]
    (mapping,) = api["ports"]
    assert mapping.rsplit(":", 1)[-1] == str(port)
    assert settings_from(image_env(), monkeypatch).host == "0.0.0.0"


# --- compose shape ----------------------------------------------------------------------------


def test_compose_worker_scales_and_reserves_a_gpu() -> None:
    services = load_compose(*GPU)["services"]
    worker = services["worker"]
    # `docker compose up --scale worker=N` needs neither a fixed name nor a host port.
    assert "container_name" not in worker and "ports" not in worker
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert compose_environment(worker)["BARK_DEVICE"] == "cuda"
    # The model cache is a shared named volume at the image's HF_HOME.
    cache = f"hf-cache:{image_env()['HF_HOME']}"
    assert cache in worker["volumes"] and cache in services["model-download"]["volumes"]
    assert services["model-download"]["profiles"], "one-shot: only on `run` or --profile"


def test_compose_api_waits_for_a_healthy_redis_with_aof() -> None:
    services = load_compose(*GPU)["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:")
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_cpu_override_drops_the_gpu() -> None:
    worker = load_compose(*CPU)["services"]["worker"]
    assert "deploy" not in worker
    env = compose_environment(worker)
    assert env["BARK_DEVICE"] == "cpu"
    assert env["BARK_DTYPE"] in ("float32", "bfloat16")  # float16 is GPU-only


# --- Dockerfile shape -------------------------------------------------------------------------


def test_dockerfile_is_multistage_on_a_plain_os_base_and_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = parse_dockerfile()
    assert len(stages) >= 2
    # CUDA comes with torch's wheels (test_deploy_torch_cuda); a CUDA base image would be a
    # second CUDA, and its NVIDIA_REQUIRE_CUDA could disagree with the wheels'
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
    assert base and base.group(1).startswith("ubuntu:"), base
    runtime = stages[-1]
    # without `compute` the NVIDIA runtime mounts no libcuda into a plain-base container
    assert "compute" in image_env()["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert "NVIDIA_VISIBLE_DEVICES" not in image_env(), "a container sees only the GPUs it asks for"
    uid = runtime.all("USER")[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: runAsNonRoot can verify it
    assert image_env()["HF_HOME"] == "/data/hf"
    health = runtime.all("HEALTHCHECK")[-1]
    command = exec_form(health.split(" CMD ", 1)[1])
    copied = [c.split()[-1] for c in runtime.all("COPY") if not c.startswith("--from")]
    assert command[-1] in copied, "HEALTHCHECK runs the script the image copies in"


def test_dockerfile_installs_the_torch_release_pyproject_allows() -> None:
    import tomllib

    text = (REPO / "Dockerfile").read_text()
    version = re.search(r"^ARG TORCH_VERSION=(\S+)", text, re.M)
    index = re.search(r"^ARG TORCH_INDEX=(\S+)", text, re.M)
    assert version and index and index.group(1).startswith("https://download.pytorch.org/whl/cu")
    with (REPO / "pyproject.toml").open("rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    (torch_spec,) = [d for d in deps if re.match(r"torch\b", d)]
    assert Version(version.group(1)) in SpecifierSet(torch_spec.removeprefix("torch"))
    assert "torchaudio" not in text.replace("torchaudio is never installed", "")


def test_every_copy_source_is_in_the_build_context() -> None:
    for stage in parse_dockerfile():
        for args in stage.all("COPY"):
            if args.startswith("--from"):
                continue
            *sources, _dest = args.split()
            for src in sources:
                assert (REPO / src).exists(), src
                assert dockerignore_allows(src), f".dockerignore excludes {src}"
    # ...and the context stays small: no venv, checkpoints or test data.
    for heavy in (".venv", "tests", "artifacts", "benchmarks", ".git"):
        assert not dockerignore_allows(heavy), heavy
    assert Path(REPO / ".dockerignore").is_file()
