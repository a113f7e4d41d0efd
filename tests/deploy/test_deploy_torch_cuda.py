"""The image's torch build is one PyTorch publishes, and every deployment file says the same.

No network here, so the published variants are a table written from PyTorch's RELEASE.md
compatibility matrix: a pin outside it (cu128 for torch 2.13, say, which 2.11 was the last to
ship) fails, and a torch release missing from it fails until its row is added.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .deploy_support import REPO, load_compose

# torch minor -> CUDA variants on download.pytorch.org. Stable ones only: experimental builds
# (cu132 for 2.13) are not for a production image.
PUBLISHED_CUDA = {
    "2.13": {"cu126", "cu130"},
}
# Per variant: the lowest Linux driver that runs it (CUDA minor-version compatibility: 12.x
# from 525, 13.x from 580) and the NVIDIA_REQUIRE_CUDA the image sets for it (the driver's
# own CUDA version: 525 reports 12.0).
DRIVER_FLOOR = {"cu126": 525, "cu130": 580}
CUDA_REQUIRE = {"cu126": "cuda>=12.0", "cu130": "cuda>=13.0"}
# Files that name the GPU build; each must name the pinned variant and its driver floor.
GPU_DOCS = (
    "docker-compose.yml",
    "deploy/README.md",
    "deploy/overlays/gpu/kustomization.yaml",
    "deploy/overlays/gpu/worker-gpu.yaml",
)
VARIANT = re.compile(r"\bcu(\d{3})\b")


def dockerfile_arg(name: str, text: str | None = None) -> str:
    text = (REPO / "Dockerfile").read_text() if text is None else text
    found = re.search(rf'^ARG {name}=("?)(\S*?)\1$', text, re.M)
    assert found, f"Dockerfile has no default for ARG {name}"
    return found.group(2)


def pinned(text: str | None = None) -> tuple[str, str]:
    """(torch minor, CUDA variant) of the Dockerfile's defaults."""
    version = dockerfile_arg("TORCH_VERSION", text)
    index = dockerfile_arg("TORCH_INDEX", text)
    found = re.fullmatch(r"https://download\.pytorch\.org/whl/(cu\d{3})/?", index)
    assert found, f"TORCH_INDEX is not a CUDA index of PyTorch's: {index}"
    return ".".join(version.split(".")[:2]), found.group(1)


def check_pin(text: str) -> str:
    minor, variant = pinned(text)
    assert minor in PUBLISHED_CUDA, f"torch {minor}: add its published CUDA variants to the table"
    published = PUBLISHED_CUDA[minor]
    assert variant in published, f"torch {minor} has no {variant} build; published: {sorted(published)}"
    assert dockerfile_arg("CUDA_REQUIRE", text) == CUDA_REQUIRE[variant]
    return variant


def test_the_dockerfile_pins_a_published_torch_cuda_build() -> None:
    check_pin((REPO / "Dockerfile").read_text())


@pytest.mark.parametrize(
    ("index", "require"),
    [
        ("https://download.pytorch.org/whl/cu128", "cuda>=12.8"),  # last published for 2.11
        ("https://download.pytorch.org/whl/cu132", "cuda>=13.2"),  # experimental only
        ("https://download.pytorch.org/whl/cu130", "cuda>=12.0"),  # requirement of another CUDA
    ],
)
def test_the_pin_check_rejects_a_variant_torch_does_not_publish(index: str, require: str) -> None:
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"^ARG TORCH_INDEX=.*$", f"ARG TORCH_INDEX={index}", text, flags=re.M)
    text = re.sub(r"^ARG CUDA_REQUIRE=.*$", f'ARG CUDA_REQUIRE="{require}"', text, flags=re.M)
    with pytest.raises(AssertionError):
        check_pin(text)


def test_every_deployment_file_names_the_pinned_variant_and_its_driver() -> None:
    minor, variant = pinned()
    floor = DRIVER_FLOOR[variant]
    files = ["Dockerfile", "docker-compose.cpu.yml", *GPU_DOCS]
    files += [str(p.relative_to(REPO)) for p in (REPO / "deploy").rglob("*.yaml")]
    for name in sorted(set(files)):
        text = (REPO / name).read_text()
        # any other variant named (an alternative for older drivers) must exist too
        for other in {f"cu{m}" for m in VARIANT.findall(text)}:
            assert other in PUBLISHED_CUDA[minor], f"{name} names {other}, not a torch {minor} build"
    for name in GPU_DOCS:
        text = " ".join((REPO / name).read_text().split())  # comments wrap lines
        assert variant in text, f"{name} does not name the image's CUDA build {variant}"
        assert f"driver >= {floor}" in text, f"{name} does not give the driver floor {floor}"


def test_compose_builds_the_dockerfile_variant_and_a_cpu_one() -> None:
    gpu_args = load_compose("docker-compose.yml")["services"]["worker"]["build"].get("args", {})
    # the Dockerfile's defaults are the one place the CUDA build is written
    assert "TORCH_INDEX" not in gpu_args and "CUDA_REQUIRE" not in gpu_args, gpu_args
    cpu = load_compose("docker-compose.yml", "docker-compose.cpu.yml")["services"]
    for name in ("api", "worker", "model-download"):
        args = cpu[name]["build"]["args"]
        assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu", name
        assert args["CUDA_REQUIRE"] == "", f"{name}: a CPU image must not require a CUDA driver"


def test_the_image_requires_the_driver_its_cuda_needs() -> None:
    runtime = (REPO / "Dockerfile").read_text().split("AS runtime", 1)[1]
    assert "NVIDIA_REQUIRE_CUDA=${CUDA_REQUIRE}" in runtime
    assert re.search(r"^ARG CUDA_REQUIRE=", runtime, re.M), "the ARG must be in the runtime stage"


def test_readme_names_no_other_torch_or_cuda_than_the_dockerfile() -> None:
    readme = Path(REPO / "deploy/README.md").read_text()
    version = dockerfile_arg("TORCH_VERSION")
    for named in set(re.findall(r"torch (\d+\.\d+(?:\.\d+)?)", readme)):
        assert version.startswith(named), f"deploy/README.md names torch {named}, the image {version}"
    assert "CUDA 12.8" not in readme and "cu128" not in readme
