# syntax=docker/dockerfile:1
# bark-serve: one image, two roles, chosen by the command:
#   docker run IMAGE                  -> bark-serve (API; with no BARK_REDIS_URL it also embeds
#                                        Redis and local workers, so one container serves)
#   docker run IMAGE bark-worker      -> a GPU worker (needs BARK_REDIS_URL)
#   docker run IMAGE bark-tts download [MODEL]  -> prefetch weights into $HF_HOME (/data/hf)
#
# CUDA comes from PyTorch's wheels, not from the base image: the cu130 build of torch 2.13
# brings CUDA 13.0 and cuDNN 9 as pip packages (nvidia-*), so a plain Ubuntu base serves GPU
# and CPU alike. The host needs only the NVIDIA driver, >= 580 for CUDA 13.x, and the NVIDIA
# Container Toolkit (deploy/README.md, "The image").
#
# Build args:
#   BASE_IMAGE      the OS (Ubuntu 24.04: its python3 is 3.12)
#   TORCH_INDEX     PyTorch wheel index: .../whl/cu130 (CUDA 13.0 build) or .../whl/cpu;
#                   .../whl/cu126 with CUDA_REQUIRE="cuda>=12.0" for hosts on 525-579 drivers
#   TORCH_VERSION   must sit in pyproject's torch range (`pip install .` must not move it)
#   CUDA_REQUIRE    the NVIDIA_REQUIRE_CUDA check of the index's CUDA ("" for the CPU build)
#   PREFETCH_MODEL  a hub id (e.g. suno/bark-small) to bake into the image; empty: don't
#   PREFETCH_REVISION  pin that model's hub revision (a commit) for reproducible images

ARG BASE_IMAGE=ubuntu:24.04

# ---- base: Python and the few system packages both stages need --------------------------
FROM ${BASE_IMAGE} AS base
# tini is PID 1: it forwards SIGTERM to the server/worker (which then drain) and reaps
# zombies (the worker's tokenizer and bark-serve's children fork).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3=3.12.* python3-venv=3.12.* ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- build: a self-contained venv in /opt/venv ------------------------------------------
FROM base AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG TORCH_VERSION=2.13.0
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first, from PyTorch's own index (PyPI's Linux wheel is not the build we pick), then
# frozen by a constraints file so that resolving our dependencies can never swap it for
# PyPI's. torchaudio is never installed: its wheels do not load beside torch 2.13.
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && python -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/constraints.txt
# Dependencies in their own layer (they change far less often than our code): install the
# project with empty packages, then drop the project itself and keep its dependencies.
COPY pyproject.toml README.md ./
RUN mkdir -p app bark_core \
    && touch app/__init__.py bark_core/__init__.py \
    && pip install --constraint /tmp/constraints.txt . \
    && pip uninstall -y bark-serve
COPY app ./app
COPY bark_core ./bark_core
RUN pip install --no-deps . \
    && pip check \
    && python -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    && grep -qx "torch==$(python -c 'import torch; print(torch.__version__)')" /tmp/constraints.txt

# ---- runtime ----------------------------------------------------------------------------
FROM base AS runtime
ARG PREFETCH_MODEL=""
ARG PREFETCH_REVISION=""
ARG CUDA_REQUIRE="cuda>=13.0"
# A fixed uid, so volume ownership and Kubernetes' runAsUser agree.
RUN groupadd --system --gid 10001 bark \
    && useradd --system --uid 10001 --gid bark --create-home --home-dir /home/bark bark \
    && mkdir -p /data/hf /data/bark \
    && chown -R bark:bark /data
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /usr/local/bin/bark-healthcheck
# BARK_HOST: inside a container the API must listen beyond loopback.
# BARK_DATA_DIR: the embedded Redis' AOF (single-container mode) lands on the /data volume.
# HF_HOME: the model cache; mount a volume here (or bake weights in with PREFETCH_MODEL).
# NVIDIA_DRIVER_CAPABILITIES: without `compute` the NVIDIA runtime mounts no libcuda into a
# container of a plain base image, and torch sees no GPU. NVIDIA_REQUIRE_CUDA: on a driver too
# old for the wheels' CUDA the container refuses to start with that reason, instead of a worker
# that finds no GPU. No NVIDIA_VISIBLE_DEVICES: a container sees only the GPUs it asked for.
ENV PATH=/opt/venv/bin:$PATH \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA=${CUDA_REQUIRE} \
    HF_HOME=/data/hf \
    BARK_HOST=0.0.0.0 \
    BARK_PORT=8000 \
    BARK_DATA_DIR=/data/bark
USER 10001:10001
WORKDIR /home/bark
# Baking weights in: no download when a new worker starts (the fastest scale-out).
# A named volume mounted on /data/hf is seeded from this layer on first use.
RUN if [ -n "${PREFETCH_MODEL}" ]; then \
        bark-tts download "${PREFETCH_MODEL}" ${PREFETCH_REVISION:+--revision "${PREFETCH_REVISION}"}; \
    fi
EXPOSE 8000
# The API's /healthz; the script passes for a bark-worker container (no HTTP there: a
# worker's liveness is its Redis heartbeat, which the API's /readyz reports).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/bark-healthcheck"]
ENTRYPOINT ["tini", "--"]
CMD ["bark-serve"]
