"""Request bodies (validated strictly: `"8"` is not an integer) and response builders.

Unknown fields are ignored, as OpenAI clients send many. Fields whose non-default values this server
cannot honour (n > 1, stop sequences, tools, logprobs) are refused with a 400 rather than ignored.
`top_p`, `frequency_penalty`, `presence_penalty` are accepted and ignored (greedy or plain sampling).
"""

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from pipelines.serve.errors import APIError

_STRICT = ConfigDict(strict=True, extra="ignore")  # strict floats still take JSON integers


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Literal["system", "user", "assistant"]
    content: StrictStr | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class JsonSchemaSpec(BaseModel):
    model_config = _STRICT
    name: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    model_config = _STRICT
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")  # llama.cpp's json_object + schema

    def schema_or_none(self) -> dict[str, Any] | None:
        if self.type == "text":
            return None
        if self.type == "json_schema":
            if self.json_schema is None or self.json_schema.schema_ is None:
                raise APIError(400, "response_format.json_schema.schema is required for type json_schema",
                               param="response_format.json_schema.schema", code="missing_field")
            return self.json_schema.schema_
        return self.schema_ if self.schema_ is not None else {"type": "object"}


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    model_config = _STRICT
    model: StrictStr
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: StrictInt | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    guided_json: dict[str, Any] | None = None  # vLLM's extra parameter
    user: StrictStr | None = None
    n: Annotated[StrictInt, Field(ge=1)] = 1
    stop: StrictStr | list[StrictStr] | None = None
    logprobs: StrictBool | None = None
    tools: list[Any] | None = None

    def refuse_unsupported(self) -> None:
        if self.n != 1:
            raise APIError(400, "n > 1 is not supported by this server", param="n", code="unsupported_value")
        if self.stop:
            raise APIError(400, "stop sequences are not supported by this server", param="stop",
                           code="unsupported_value")
        if self.logprobs:
            raise APIError(400, "logprobs are not supported by this server", param="logprobs",
                           code="unsupported_value")
        if self.tools:
            raise APIError(400, "tools are not supported by this server", param="tools", code="unsupported_value")

    def json_schema(self) -> dict[str, Any] | None:
        if self.guided_json is not None:
            return self.guided_json
        return self.response_format.schema_or_none() if self.response_format else None

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class LoadLoraRequest(BaseModel):
    model_config = _STRICT
    lora_name: Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
    lora_path: Annotated[StrictStr, Field(min_length=1)]


class UnloadLoraRequest(BaseModel):
    model_config = _STRICT
    lora_name: StrictStr


class RouteRequest(BaseModel):
    model_config = _STRICT
    name: Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
    weights: Annotated[dict[str, Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]
    # round_robin: smooth weighted round robin, the exact split over any window of sum(weights) requests;
    # hash: by the request's `user` (else its messages), so one user always meets the same adapter;
    # random: seeded random draws.
    strategy: Literal["round_robin", "hash", "random"] = "round_robin"
    seed: StrictInt = 0


class FaultRequest(BaseModel):
    model_config = _STRICT
    model: StrictStr
    latency_s: Annotated[float, Field(ge=0, le=600)] = 0.0
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    seed: StrictInt = 0


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_body(*, request_id: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chunk_body(*, request_id: str, model: str, created: int, delta: dict[str, str],
               finish_reason: str | None) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
