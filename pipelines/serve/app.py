"""The FastAPI app of `eurolora serve`: `create_app(backend, settings, snapshot_dir)`.

API (vLLM's where vLLM has one):
- `POST /v1/chat/completions`: OpenAI chat completions. `model` is the base model's served name, a
  loaded adapter's name or a route's name (the response's `model` names what actually served).
  `response_format` `{"type": "json_schema", "json_schema": {"schema": ...}}` (also llama.cpp's
  `{"type": "json_object", "schema": ...}` and vLLM's `guided_json`) constrains the output with
  xgrammar. `max_tokens`/`max_completion_tokens`, `temperature` and `seed` are honoured; `top_p`
  and penalties are accepted and ignored; `n > 1`, `stop`, `logprobs` and `tools` are refused (400).
  `stream: true` answers Server-Sent Events in the `chat.completion.chunk` format ending with
  `data: [DONE]`: the text is sent as the engine generates it, one chunk per decoded token (inside a
  batch, every request gets its own tokens after each decoding step). The concatenated deltas equal the
  non-streamed text. A generation that fails after the stream began ends with an OpenAI error object
  (`data: {"error": ...}`) before `[DONE]`.
- `GET /v1/models`: the base model and every loaded adapter (`parent` = the base), like vLLM, plus each
  adapter's `sha256` (of its config and weights; not in vLLM) so a client can tell which weights serve.
- `POST /v1/load_lora_adapter {"lora_name", "lora_path"}`, `POST /v1/unload_lora_adapter {"lora_name"}`:
  vLLM's runtime adapter API and plain-text answers. Different weights under a loaded name are refused
  (use versioned names); the same weights again are a no-op. vLLM itself only offers these endpoints
  with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True.
- `GET/POST /v1/routes`, `DELETE /v1/routes/{name}`: weighted routes (see `pipelines.serve.routing`).
- `GET/POST/DELETE /v1/faults`: fault injection, only with `enable_fault_injection`.
- `GET /metrics` (Prometheus, see `pipelines.serve.metrics`), `GET /health` (200 once the model and
  the startup adapters are loaded).

Errors are OpenAI-shaped JSON (`pipelines.serve.errors`): unknown model 404 `model_not_found`, bad or
oversized requests 400, injected faults and engine failures 500, a full queue 503. Logs carry model
names, counts, statuses and timings, never prompt or completion text.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, SecretStr, ValidationError

from pipelines.serve.adapters import Adapter, AdapterRegistry
from pipelines.serve.backend import Backend
from pipelines.serve.batching import Batcher, BatcherClosed, Job, Sampling, ServerBusy
from pipelines.serve.errors import APIError, install_error_handlers, validation_error
from pipelines.serve.faults import Fault
from pipelines.serve.metrics import BAD_REQUEST, CONTENT_TYPE, MODEL_SERVER_ERROR, ServeMetrics
from pipelines.serve.protocol import (
    ChatCompletionRequest,
    FaultRequest,
    LoadLoraRequest,
    RouteRequest,
    UnloadLoraRequest,
    chunk_body,
    completion_body,
    completion_id,
    usage,
)
from pipelines.serve.routing import Route
from steps.common.engines.base import GenerationRequest, GenerationResult

log = logging.getLogger("eurolora.serve")

M = TypeVar("M", bound=BaseModel)
_WARMUP = [{"role": "user", "content": "Hello"}]


class ServeSettings(BaseModel):
    model_config = {"extra": "forbid"}

    served_model_name: str = Field("base", min_length=1)
    max_prompt_tokens: int | None = Field(None, ge=1)  # default: the model's context minus one
    default_max_tokens: int = Field(256, ge=1)  # when a request names no max_tokens
    max_batch: int = Field(8, ge=1, le=256)
    batch_window_ms: float = Field(25.0, ge=0, le=1000)
    max_waiting: int = Field(1024, ge=1)
    max_loras: int = Field(32, ge=1)
    default_temperature: float = Field(0.0, ge=0, le=2)  # greedy unless a request asks otherwise
    seed: int = 0
    enable_fault_injection: bool = False
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    api_key: SecretStr | None = None  # when set, /v1/* needs `Authorization: Bearer <key>`
    adapters: dict[str, str] = Field(default_factory=dict)  # loaded at startup, before /health is up
    routes: list[RouteRequest] = Field(default_factory=list)  # applied at startup, after the adapters


class _State:
    """Everything mutable of one app. Touched from the event loop only (the engine runs elsewhere)."""

    def __init__(self, backend: Backend, settings: ServeSettings, snapshot_dir: Path) -> None:
        self.backend = backend
        self.settings = settings
        self.base = settings.served_model_name
        self.metrics = ServeMetrics(settings.max_loras)
        self.adapters = AdapterRegistry(snapshot_dir, settings.max_loras)
        self.routes: dict[str, Route] = {}
        self.faults: dict[str, Fault] = {}
        self.batcher = Batcher(backend.generate, max_batch=settings.max_batch,
                               window_s=settings.batch_window_ms / 1000, max_waiting=settings.max_waiting,
                               metrics=self.metrics)
        self.load_lock = asyncio.Lock()
        self.schemas: OrderedDict[str, str | None] = OrderedDict()  # schema JSON -> error or None
        self.created = int(time.time())
        self.ready = False


def create_app(backend: Backend, settings: ServeSettings, snapshot_dir: Path | None = None) -> FastAPI:
    """The app; the batcher starts, and the startup adapters and routes load, in its lifespan.

    Adapter snapshots go to `snapshot_dir`, or to a temporary folder removed at shutdown (in the
    lifespan: uvicorn re-raises SIGTERM after shutdown, so code after `server.run()` never runs)."""
    state: _State | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal state
        owned = None if snapshot_dir is not None else tempfile.TemporaryDirectory(prefix="eurolora-serve-")
        state = _State(backend, settings, snapshot_dir if owned is None else Path(owned.name))
        state.metrics.touch(state.base)
        state.metrics.lora_state((), ())
        await state.batcher.start()
        try:
            for name, path in settings.adapters.items():
                try:
                    await _load_adapter(state, LoadLoraRequest(lora_name=name, lora_path=path))
                except APIError as exc:
                    raise RuntimeError(f"--adapter {name}={path}: {exc.message}") from None
            for route in settings.routes:
                try:
                    _set_route(state, route)
                except APIError as exc:
                    raise RuntimeError(f"route {route.name!r}: {exc.message}") from None
            state.ready = True
            log.info("serve: ready: base %r, %d adapters, %d routes, fault injection %s", state.base,
                     len(settings.adapters), len(settings.routes), "ON" if settings.enable_fault_injection else "off")
            yield
        finally:
            await state.batcher.close()
            if owned is not None:
                owned.cleanup()

    def st() -> _State:
        assert state is not None, "the app is used outside its lifespan"
        return state

    app = FastAPI(title="eurolora serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.add_middleware(_HTTPMetricsAndAuth, get_state=st)

    @app.get("/health")
    async def health() -> Response:
        if not st().ready:
            raise APIError(503, "loading", code="not_ready")
        return Response(status_code=200)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(st().metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        s = st()
        base = {"id": s.base, "object": "model", "created": s.created, "owned_by": "eurolora",
                "root": backend.root, "parent": None, "max_model_len": backend.context_length}
        loras = [{"id": a.name, "object": "model", "created": a.created, "owned_by": "eurolora",
                  "root": a.source, "parent": s.base, "max_model_len": backend.context_length, "sha256": a.digest}
                 for a in s.adapters.all()]
        return {"object": "list", "data": [base, *loras]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _chat(st(), request)

    @app.post("/v1/load_lora_adapter")
    async def load_lora(request: Request) -> Response:
        body = await _parse(request, LoadLoraRequest, st().settings.max_body_bytes)
        return PlainTextResponse(await _load_adapter(st(), body))

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora(request: Request) -> Response:
        s = st()
        body = await _parse(request, UnloadLoraRequest, s.settings.max_body_bytes)
        users = sorted(r.name for r in s.routes.values() if body.lora_name in r.weights)
        if users and body.lora_name in s.adapters:
            raise APIError(409, f"the LoRA adapter {body.lora_name!r} is used by routes {users}; change or delete "
                                "them first", param="lora_name", code="adapter_in_use")
        adapter = s.adapters.remove(body.lora_name)
        s.faults.pop(adapter.name, None)
        log.info("serve: unloaded adapter %s (sha256 %s)", adapter.name, adapter.digest[:12])
        return PlainTextResponse(f"Success: LoRA adapter '{adapter.name}' removed successfully.")

    @app.get("/v1/routes")
    async def list_routes() -> dict[str, Any]:
        return {"object": "list", "data": [route.describe() for route in st().routes.values()]}

    @app.post("/v1/routes")
    async def set_route(request: Request) -> dict[str, Any]:
        body = await _parse(request, RouteRequest, st().settings.max_body_bytes)
        return _set_route(st(), body).describe()

    @app.delete("/v1/routes/{name}")
    async def delete_route(name: str) -> dict[str, Any]:
        route = st().routes.pop(name, None)
        if route is None:
            raise APIError(404, f"no route named {name!r}", param="name", code="route_not_found")
        log.info("serve: deleted route %s", name)
        return {"name": name, "object": "route", "deleted": True}

    if settings.enable_fault_injection:
        @app.get("/v1/faults")
        async def list_faults() -> dict[str, Any]:
            return {"object": "list", "data": [fault.describe() for fault in st().faults.values()]}

        @app.post("/v1/faults")
        async def set_fault(request: Request) -> dict[str, Any]:
            s = st()
            body = await _parse(request, FaultRequest, s.settings.max_body_bytes)
            if body.model in s.routes:
                raise APIError(400, f"{body.model!r} is a route: faults apply to the adapter that serves",
                               param="model", code="invalid_value")
            if body.model != s.base and body.model not in s.adapters:
                raise APIError(404, f"the model {body.model!r} does not exist", param="model",
                               code="model_not_found")
            if body.latency_s == 0 and body.error_rate == 0:
                s.faults.pop(body.model, None)
                log.warning("serve: fault injection cleared for %s", body.model)
                return {"model": body.model, "object": "fault", "cleared": True}
            fault = Fault(body.model, float(body.latency_s), float(body.error_rate), body.seed)
            s.faults[body.model] = fault
            log.warning("serve: fault injection for %s: latency %.3fs, error rate %.2f", body.model,
                        fault.latency_s, fault.error_rate)
            return fault.describe()

        @app.delete("/v1/faults")
        async def clear_faults() -> dict[str, Any]:
            s = st()
            count = len(s.faults)
            s.faults.clear()
            log.warning("serve: fault injection cleared (%d faults)", count)
            return {"object": "list", "data": [], "cleared": count}

    return app


# -- chat completions -----------------------------------------------------------------------------

async def _chat(s: _State, request: Request) -> Response:
    arrived = time.perf_counter()
    asked = served = ""  # metrics labels: "" until the model resolved (no label per client string)
    try:
        body = await _parse(request, ChatCompletionRequest, s.settings.max_body_bytes)
        body.refuse_unsupported()
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        target, lora = _resolve(s, body.model, body.user, messages)
        asked, served = body.model, target
        s.metrics.objective_requests.labels(asked, served).inc()
        generation, prompt_tokens = await _prepare(s, body, messages, lora)
        fault = s.faults.get(served)
        if fault is not None:
            if fault.latency_s > 0:
                fault.delayed += 1
                await asyncio.sleep(fault.latency_s)
            if fault.draw_error():
                raise APIError(500, f"injected fault for {served!r}", code="injected_fault")
        sampling = Sampling(
            temperature=float(body.temperature if body.temperature is not None else s.settings.default_temperature),
            seed=body.seed if body.seed is not None else s.settings.seed,
        )
        done = _Done(s, asked, served, prompt_tokens, arrived, body.stream)
        if body.stream:
            return _stream(s, body, generation, sampling, lora, done)
        with _admitted():
            job = await s.batcher.submit(generation, sampling, served, lora.name if lora else None)
        result = done.result(job)
    except APIError as exc:
        _count_error(s, asked, served)
        log.info("serve: chat model=%s status=%d code=%s in %.3fs", served or "?", exc.status, exc.code,
                 time.perf_counter() - arrived)
        raise
    return JSONResponse(completion_body(request_id=completion_id(), model=served, text=result.text,
                                        finish_reason=result.finish_reason, prompt_tokens=prompt_tokens,
                                        completion_tokens=result.completion_tokens))


class _Done:
    """What happens once a request's generation is over: metrics and the log line, or the error."""

    def __init__(self, s: _State, asked: str, served: str, prompt_tokens: int, arrived: float, stream: bool) -> None:
        self.s, self.asked, self.served = s, asked, served
        self.prompt_tokens, self.arrived, self.stream = prompt_tokens, arrived, stream

    def result(self, job: Job) -> GenerationResult:
        """The job's result, observed; APIError (already counted by the caller) when generation failed."""
        error = job.future.exception()
        if isinstance(error, BatcherClosed):
            raise APIError(503, "the server is shutting down", code="shutting_down")
        if error is not None:
            log.error("serve: generation failed for %s: %s", self.served, type(error).__name__)
            raise APIError(500, f"internal server error ({type(error).__name__})", code="internal_error")
        result = job.future.result()
        if result.finish_reason == "error":
            kind = (result.error or "error").split(":", 1)[0]
            log.error("serve: generation failed for %s: %s", self.served, kind)
            raise APIError(500, f"generation failed: {result.error}", code="generation_failed")
        _observe(self.s, self.asked, self.served, job, result, self.prompt_tokens, self.arrived)
        log.info("serve: chat model=%s status=200 batch=%d prompt_tokens=%d completion_tokens=%d finish=%s "
                 "queue=%.3fs total=%.3fs stream=%s", self.served, job.batch_size, self.prompt_tokens,
                 result.completion_tokens, result.finish_reason, job.started - job.enqueued,
                 time.perf_counter() - self.arrived, self.stream)
        return result


@contextmanager
def _admitted() -> Iterator[None]:
    """The batcher's refusals as 503s."""
    try:
        yield
    except ServerBusy:
        raise APIError(503, "the server is overloaded; retry later", code="server_busy") from None
    except BatcherClosed:
        raise APIError(503, "the server is shutting down", code="shutting_down") from None


def _count_error(s: _State, asked: str, served: str) -> None:
    code = MODEL_SERVER_ERROR if served else BAD_REQUEST
    s.metrics.objective_errors.labels(asked, served, code).inc()


def _stream(s: _State, body: ChatCompletionRequest, generation: GenerationRequest, sampling: Sampling,
            lora: Adapter | None, done: _Done) -> StreamingResponse:
    """Answer at once and send the text as the engine generates it (one chunk per decoded piece)."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    with _admitted():
        job = s.batcher.enqueue(generation, sampling, done.served, lora.name if lora else None,
                                on_text=lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece))
    # Runs after every piece: the worker's pieces were scheduled before the batch's result.
    job.future.add_done_callback(lambda _: pieces.put_nowait(None))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(_sse(job, pieces, done, include_usage), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def _sse(job: Job, pieces: asyncio.Queue[str | None], done: _Done, include_usage: bool
               ) -> AsyncIterator[bytes]:
    """OpenAI stream chunks: the role, each piece as generated, the finish reason, usage, `[DONE]`.

    A generation that fails after the 200 went out ends with an OpenAI error object before `[DONE]`."""
    request_id, model, created = completion_id(), done.served, int(time.time())

    def event(data: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        data = chunk_body(request_id=request_id, model=model, created=created, delta=delta, finish_reason=finish)
        if include_usage:
            data["usage"] = None
        return event(data)

    yield chunk({"role": "assistant", "content": ""}, None)
    sent: list[str] = []
    while (piece := await pieces.get()) is not None:
        sent.append(piece)
        yield chunk({"content": piece}, None)
    try:
        result = done.result(job)
    except APIError as exc:
        _count_error(done.s, done.asked, done.served)
        log.info("serve: chat model=%s streamed, then failed: code=%s", model, exc.code)
        yield event(exc.body())
        yield b"data: [DONE]\n\n"
        return
    streamed = "".join(sent)
    if result.text.startswith(streamed):
        if result.text[len(streamed):]:  # what a retried engine call did not stream
            yield chunk({"content": result.text[len(streamed):]}, None)
    else:
        log.warning("serve: the streamed text of %s differs from its final text", model)
    yield chunk({}, result.finish_reason)
    if include_usage:
        yield event({"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [], "usage": usage(done.prompt_tokens, result.completion_tokens)})
    yield b"data: [DONE]\n\n"


def _resolve(s: _State, name: str, user: str | None, messages: list[dict[str, str]]) -> tuple[str, Adapter | None]:
    """(served model name, adapter or None for the base) for a request's `model`."""
    route = s.routes.get(name)
    if route is not None:
        key = user if user is not None else json.dumps(messages, sort_keys=True)
        name = route.pick(key)
    if name == s.base:
        return name, None
    adapter = s.adapters.get(name)
    if adapter is None:
        if route is not None:  # cannot happen: unloading a routed adapter is refused
            raise APIError(500, f"route {route.name!r} points at {name!r}, which is not loaded", code="bad_route")
        raise APIError(404, f"The model `{name}` does not exist.", param="model", code="model_not_found")
    return name, adapter


async def _prepare(s: _State, body: ChatCompletionRequest, messages: list[dict[str, str]],
                   lora: Adapter | None) -> tuple[GenerationRequest, int]:
    """The engine request and its prompt tokens; 400 for an oversized prompt or an unusable schema."""
    try:
        prompt_tokens = s.backend.count_prompt_tokens(messages)
    except ValueError as exc:
        raise APIError(400, str(exc), param="messages", code="invalid_messages") from None
    context = s.backend.context_length
    limit = s.settings.max_prompt_tokens or context - 1
    if prompt_tokens > limit:
        raise APIError(400, f"the prompt has {prompt_tokens} tokens, over this server's limit of {limit} "
                            "(--max-prompt-tokens)", param="messages", code="context_length_exceeded")
    max_tokens = body.requested_max_tokens()
    if max_tokens is None:
        max_tokens = max(1, min(s.settings.default_max_tokens, context - prompt_tokens))
    if prompt_tokens + max_tokens > context:
        raise APIError(400, f"this model's maximum context length is {context} tokens; the prompt has "
                            f"{prompt_tokens} and max_tokens asks for {max_tokens}", param="max_tokens",
                       code="context_length_exceeded")
    schema = body.json_schema()
    if schema is not None:
        await _check_schema(s, schema)
    generation = GenerationRequest(messages=messages, max_new_tokens=max_tokens, json_schema=schema,
                                   adapter=str(lora.folder) if lora else None)
    return generation, prompt_tokens


async def _check_schema(s: _State, schema: dict[str, Any]) -> None:
    """400 for a schema that is not a JSON schema or that xgrammar cannot compile (cached)."""
    key = json.dumps(schema, sort_keys=True)
    if key not in s.schemas:
        s.schemas[key] = await asyncio.to_thread(_schema_problem, schema, key)
        if len(s.schemas) > 256:
            s.schemas.popitem(last=False)
    problem = s.schemas[key]
    if problem is not None:
        raise APIError(400, f"invalid JSON schema: {problem}", param="response_format", code="invalid_schema")


def _schema_problem(schema: dict[str, Any], key: str) -> str | None:
    try:
        import jsonschema

        jsonschema.validators.validator_for(schema).check_schema(schema)
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001 - jsonschema.SchemaError and friends
        return getattr(exc, "message", type(exc).__name__)[:300]
    try:
        import xgrammar as xgr

        xgr.Grammar.from_json_schema(key, any_whitespace=False)
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001
        detail = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", str(exc).strip())  # xgrammar's "[time] file:line: "
        return f"not supported by the grammar engine ({detail[:300]})"
    return None


def _observe(s: _State, asked: str, model: str, job: Job, result: GenerationResult, prompt_tokens: int,
             arrived: float) -> None:
    m = s.metrics
    now = time.perf_counter()
    m.success.labels(model, result.finish_reason).inc()
    m.prompt_tokens.labels(model).inc(prompt_tokens)
    m.generation_tokens.labels(model).inc(result.completion_tokens)
    m.request_prompt_tokens.labels(model).observe(prompt_tokens)
    m.request_generation_tokens.labels(model).observe(result.completion_tokens)
    first_token = result.first_token_at or job.finished  # when the batch's prefill produced its first token
    m.ttft.labels(model).observe(first_token - arrived)
    m.e2e.labels(model).observe(now - arrived)
    m.objective_latency.labels(asked, model).observe(now - arrived)
    m.queue_time.labels(model).observe(job.started - job.enqueued)
    m.inference_time.labels(model).observe(job.finished - job.started)


# -- adapters and routes --------------------------------------------------------------------------

async def _load_adapter(s: _State, body: LoadLoraRequest) -> str:
    name = body.lora_name
    if name == s.base or name in s.routes:
        raise APIError(400, f"{name!r} is already the name of the base model or a route", param="lora_name",
                       code="invalid_value")
    async with s.load_lock:
        adapter, already = await asyncio.to_thread(s.adapters.prepare, name, body.lora_path)
        if already:
            log.info("serve: adapter %s already loaded with the same weights (sha256 %s)", name, adapter.digest[:12])
            return f"Success: LoRA adapter '{name}' is already loaded with these weights."
        started = time.perf_counter()
        # Load now, through the engine, so a broken adapter fails here and not at its first request.
        warmup = GenerationRequest(messages=_WARMUP, max_new_tokens=1, adapter=str(adapter.folder))
        try:
            job = await s.batcher.submit(warmup, Sampling(0.0, s.settings.seed), name, name)
        except (ServerBusy, BatcherClosed):
            raise APIError(503, "the server is busy or shutting down; retry the load", code="server_busy") from None
        result = job.future.result()
        if result.finish_reason == "error":
            raise APIError(400, f"the LoRA adapter at {body.lora_path!r} could not be loaded: {result.error}",
                           param="lora_path", code="adapter_load_failed")
        s.adapters.add(adapter)
        s.metrics.touch(name)
        log.info("serve: loaded adapter %s (sha256 %s) in %.2fs", name, adapter.digest[:12],
                 time.perf_counter() - started)
        return f"Success: LoRA adapter '{name}' added successfully."


def _set_route(s: _State, body: RouteRequest) -> Route:
    if body.name == s.base or body.name in s.adapters:
        raise APIError(400, f"{body.name!r} is already a model name; a route needs a name of its own",
                       param="name", code="invalid_value")
    for target in body.weights:
        if target in s.routes:
            raise APIError(400, f"route target {target!r} is a route; routes point at models", param="weights",
                           code="invalid_value")
        if target != s.base and target not in s.adapters:
            raise APIError(404, f"route target {target!r} is not a loaded model", param="weights",
                           code="model_not_found")
    if sum(body.weights.values()) <= 0:
        raise APIError(400, "a route needs at least one positive weight", param="weights", code="invalid_value")
    route = Route(body.name, dict(body.weights), body.strategy, body.seed)
    s.routes[body.name] = route
    log.info("serve: route %s = %s (%s)", body.name, route.weights, body.strategy)
    return route


# -- plumbing -------------------------------------------------------------------------------------

async def _parse(request: Request, model: type[M], max_bytes: int) -> M:
    """The body as `model`, strictly; 413 over `max_bytes`, 400 for bad JSON, types or missing fields."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise APIError(413, f"request body over {max_bytes} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise APIError(413, f"request body over {max_bytes} bytes", code="body_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise APIError(400, "the request body is empty; expected a JSON object", code="invalid_json")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


class _HTTPMetricsAndAuth:
    """ASGI middleware: `http_requests_total` by route template, and the API key on /v1/* when set."""

    def __init__(self, app: Callable[..., Awaitable[None]], get_state: Callable[[], _State]) -> None:
        self.app = app
        self.get_state = get_state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.get_state()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            key = s.settings.api_key
            if key is not None and scope["path"].startswith("/v1/") and not _authorised(scope, key):
                response = APIError(401, "missing or wrong API key (Authorization: Bearer ...)",
                                    code="invalid_api_key").response()
                await response(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            handler = getattr(route, "path", None) or "none"
            s.metrics.http.labels(handler, scope.get("method", ""), f"{status['code'] // 100}xx").inc()


def _authorised(scope: dict[str, Any], key: SecretStr) -> bool:
    headers = dict(scope.get("headers") or [])
    given = headers.get(b"authorization", b"").decode("latin-1")
    expected = f"Bearer {key.get_secret_value()}"
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())
