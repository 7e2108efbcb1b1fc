"""`eurolora serve` without a model: the app over a fake backend (protocol, errors, adapters' rules,
routes, faults, batching, metrics) and the command's argument checks. The real server runs in
tests/local/test_serve_server.py."""

import argparse
import asyncio
import json
import logging
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from pipelines.serve.app import ServeSettings, create_app
from pipelines.serve.batching import OnText, Sampling
from pipelines.serve.command import handle, load_routes, parse_adapters, register
from pipelines.serve.routing import Route
from steps.common.engines.base import GenerationRequest, GenerationResult

HI = [{"role": "user", "content": "Hi"}]


class FakeBackend:
    """Counts words as tokens; answers `w0 w1 ...` (prefixed with the adapter's weights file size) and
    streams it word by word (only the first word for a message with PARTIAL, as a retried call does)."""

    root = "/models/fake"
    context_length = 64

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[tuple[int, Sampling]] = []

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        if any(m["content"] == "TEMPLATE-ERROR" for m in messages):
            raise ValueError("the model's chat template refused these messages (TemplateError)")
        return 3 + sum(len(m["content"].split()) for m in messages)

    def generate(self, requests: list[GenerationRequest], sampling: Sampling,
                 on_text: OnText | None = None) -> list[GenerationResult]:
        self.calls.append((len(requests), sampling))
        time.sleep(self.delay_s)
        if any("RAISE" in m["content"] for r in requests for m in r.messages):
            raise RuntimeError("the whole batch failed")
        results = [self._one(r) for r in requests]
        for index, (request, result) in enumerate(zip(requests, results, strict=True)):
            words = re.findall(r"\s*\S+", result.text if result.finish_reason != "error" else "partial text")
            if any("PARTIAL" in m["content"] for m in request.messages):
                words = words[:1]
            for word in words:
                if on_text is not None:
                    on_text(index, word)
        return results

    def _one(self, request: GenerationRequest) -> GenerationResult:
        if any("FAIL" in m["content"] for m in request.messages):
            return GenerationResult(text="", finish_reason="error", error="RuntimeError: this one failed")
        prefix = "base"
        if request.adapter is not None:
            config = (Path(request.adapter) / "adapter_config.json").read_text()
            if "broken" in config:
                return GenerationResult(text="", finish_reason="error", error="ValueError: incompatible adapter")
            prefix = f"lora{(Path(request.adapter) / 'adapter_model.safetensors').stat().st_size}"
        if request.json_schema is not None:
            return GenerationResult(text='{"city": "Paris"}', finish_reason="stop", completion_tokens=5)
        words = [prefix, *(f"w{i}" for i in range(request.max_new_tokens - 1))]
        return GenerationResult(text=" ".join(words), finish_reason="length", completion_tokens=len(words))

    def close(self) -> None:
        pass


def _adapter(folder: Path, weights: bytes = b"weights", config: str = "{}") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(config)
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


def _client(backend: FakeBackend, tmp_path: Path, **settings: Any) -> TestClient:
    app = create_app(backend, ServeSettings(**settings), tmp_path / "snapshots")
    return TestClient(app, raise_server_exceptions=False)


def _chat(client: TestClient, model: str = "base", **extra: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": HI, **extra})


def _error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code, error
    return error


def _samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    text = client.get("/metrics").text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# -- chat completions ----------------------------------------------------------------------------

def test_chat_completion_shape(backend: FakeBackend, tmp_path: Path) -> None:
    with _client(backend, tmp_path) as client:
        body = _chat(client, max_tokens=3).json()
    assert body["object"] == "chat.completion" and body["model"] == "base"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "base w0 w1"},
                                "logprobs": None, "finish_reason": "length"}]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_default_max_tokens_and_context_limit(backend: FakeBackend, tmp_path: Path) -> None:
    with _client(backend, tmp_path, default_max_tokens=5) as client:
        assert _chat(client).json()["usage"]["completion_tokens"] == 5
        _error(_chat(client, max_tokens=61), 400, "context_length_exceeded")  # 4 + 61 > 64
        assert _chat(client, max_tokens=60).status_code == 200


def test_streaming_chunks_concatenate_to_the_completion(backend: FakeBackend, tmp_path: Path) -> None:
    with _client(backend, tmp_path) as client:
        plain = _chat(client, max_tokens=6).json()["choices"][0]["message"]["content"]
        response = _chat(client, max_tokens=6, stream=True, stream_options={"include_usage": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == plain
    assert len(chunks) == 1 + 6 + 1 + 1  # role, one chunk per word, finish, usage
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6


def _events(response: httpx.Response) -> list[dict | str]:
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def test_streaming_sends_what_a_retried_call_did_not_stream_and_reports_late_failures(
        backend: FakeBackend, tmp_path: Path) -> None:
    with _client(backend, tmp_path) as client:
        plain = _chat(client, max_tokens=4, messages=[{"role": "user", "content": "PARTIAL"}]).json()
        partial = _events(_chat(client, max_tokens=4, stream=True, messages=[{"role": "user", "content": "PARTIAL"}]))
        failed = _events(_chat(client, max_tokens=4, stream=True, messages=[{"role": "user", "content": "FAIL"}]))
        metrics = _samples(client)
    # One piece streamed by the engine, the rest sent with the end: the text is whole and in order.
    deltas = [e["choices"][0]["delta"].get("content", "") for e in partial[:-1] if e["choices"]]
    assert deltas == ["", "base", " w0 w1 w2", ""]
    assert "".join(deltas) == plain["choices"][0]["message"]["content"]
    # A generation failing after the 200 went out: its pieces, an OpenAI error object, [DONE].
    assert failed[-1] == "[DONE]" and failed[-2] == {"error": {
        "message": "generation failed: RuntimeError: this one failed", "type": "server_error", "param": None,
        "code": "generation_failed"}}
    assert metrics[("inference_objective_request_error_total", frozenset(
        {("model_name", "base"), ("target_model_name", "base"), ("error_code", "ModelServerError")}))] == 1


def test_json_schema_reaches_the_engine(tmp_path: Path) -> None:
    seen: list[GenerationRequest] = []

    class Recording(FakeBackend):
        def generate(self, requests: list[GenerationRequest], sampling: Sampling,
                     on_text: OnText | None = None) -> list[GenerationResult]:
            seen.extend(requests)
            return super().generate(requests, sampling, on_text)

    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 9}}, "required": ["city"]}
    with _client(Recording(), tmp_path) as client:
        openai_style = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
        assert json.loads(_chat(client, response_format=openai_style).json()["choices"][0]["message"]["content"])
        assert _chat(client, response_format={"type": "json_object", "schema": schema}).status_code == 200
        assert _chat(client, guided_json=schema).status_code == 200
        assert _chat(client, response_format={"type": "text"}).status_code == 200
        _error(_chat(client, response_format={"type": "json_schema"}), 400, "missing_field")
    assert [r.json_schema for r in seen] == [schema, schema, schema, None]


@pytest.mark.parametrize(("payload", "status", "code", "param"), [
    ({"model": "nope", "messages": HI}, 404, "model_not_found", "model"),
    (b"{", 400, "invalid_json", None),
    (b"", 400, "invalid_json", None),
    (b"[1, 2]", 400, "invalid_value", None),
    ({"model": "base"}, 400, "missing_field", "messages"),
    ({"messages": HI}, 400, "missing_field", "model"),
    ({"model": "base", "messages": []}, 400, "invalid_value", "messages"),
    ({"model": "base", "messages": "Hi"}, 400, "invalid_value", "messages"),
    ({"model": "base", "messages": [{"role": "user"}]}, 400, "missing_field", "messages.0.content"),
    ({"model": "base", "messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_value", "messages.0.role"),
    ({"model": "base", "messages": HI, "max_tokens": "4"}, 400, "invalid_value", "max_tokens"),
    ({"model": "base", "messages": HI, "max_tokens": 0}, 400, "invalid_value", "max_tokens"),
    ({"model": "base", "messages": HI, "temperature": "hot"}, 400, "invalid_value", "temperature"),
    ({"model": "base", "messages": HI, "temperature": 3}, 400, "invalid_value", "temperature"),
    ({"model": "base", "messages": HI, "stream": "true"}, 400, "invalid_value", "stream"),
    ({"model": 7, "messages": HI}, 400, "invalid_value", "model"),
    ({"model": "base", "messages": [{"role": "user", "content": "x " * 70}]}, 400, "context_length_exceeded",
     "messages"),
    ({"model": "base", "messages": [{"role": "user", "content": "TEMPLATE-ERROR"}]}, 400, "invalid_messages",
     "messages"),
    ({"model": "base", "messages": HI, "n": 3}, 400, "unsupported_value", "n"),
    ({"model": "base", "messages": HI, "stop": ["\n"]}, 400, "unsupported_value", "stop"),
    ({"model": "base", "messages": HI, "response_format": {"type": "json_schema", "json_schema": {
        "schema": {"type": "strin"}}}}, 400, "invalid_schema", "response_format"),
    ({"model": "base", "messages": HI, "response_format": {"type": "yaml"}}, 400, "invalid_value",
     "response_format.type"),
])
def test_bad_requests_get_openai_errors_and_the_server_survives(
        backend: FakeBackend, tmp_path: Path, payload: object, status: int, code: str, param: str | None) -> None:
    with _client(backend, tmp_path, max_prompt_tokens=60) as client:
        if isinstance(payload, bytes):
            response = client.post("/v1/chat/completions", content=payload,
                                   headers={"content-type": "application/json"})
        else:
            response = client.post("/v1/chat/completions", json=payload)
        error = _error(response, status, code)
        assert error["param"] == param
        assert _chat(client, max_tokens=1).status_code == 200


def test_error_messages_never_echo_the_offending_value(backend: FakeBackend, tmp_path: Path) -> None:
    with _client(backend, tmp_path) as client:
        response = client.post("/v1/chat/completions", json={"model": "base", "messages": "secret-prompt-text"})
    assert "secret-prompt-text" not in response.text


def test_unknown_routes_methods_and_big_bodies(backend: FakeBackend, tmp_path: Path) -> None:
    with _client(backend, tmp_path, max_body_bytes=2048) as client:
        _error(client.get("/v1/nothing"), 404, "not_found")
        _error(client.get("/v1/chat/completions"), 405, "method_not_allowed")
        _error(_chat(client, user="x" * 4096), 413, "body_too_large")
        _error(client.get("/v1/faults"), 404)  # fault injection is off by default
        assert client.get("/health").status_code == 200


def test_engine_errors_are_500_for_that_request_only(tmp_path: Path) -> None:
    async def scenario() -> list[httpx.Response]:
        backend = FakeBackend(delay_s=0.05)
        app = create_app(backend, ServeSettings(batch_window_ms=50), tmp_path / "snapshots")
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            contents = ["Hi", "please FAIL", "Hi there", "RAISE it", "Hello"]
            return await asyncio.gather(*[
                client.post("/v1/chat/completions", json={"model": "base", "max_tokens": 2,
                                                          "messages": [{"role": "user", "content": c}]})
                for c in contents])

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200, 500, 200, 500, 200]
    _error(responses[1], 500, "generation_failed")
    _error(responses[3], 500, "generation_failed")


# -- batching ------------------------------------------------------------------------------------

def test_concurrent_requests_share_engine_calls_grouped_by_sampling(tmp_path: Path) -> None:
    backend = FakeBackend(delay_s=0.2)

    async def scenario() -> list[httpx.Response]:
        app = create_app(backend, ServeSettings(max_batch=8, batch_window_ms=100), tmp_path / "snapshots")
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            bodies = [{"model": "base", "messages": HI, "max_tokens": 2} for _ in range(8)]
            bodies += [{"model": "base", "messages": HI, "max_tokens": 2, "temperature": 0.7, "seed": 3}] * 2
            return await asyncio.gather(*[client.post("/v1/chat/completions", json=b) for b in bodies])

    responses = asyncio.run(scenario())
    assert all(r.status_code == 200 for r in responses)
    assert sorted(backend.calls, key=lambda c: c[0]) == [(2, Sampling(0.7, 3)), (8, Sampling(0.0, 0))]


def test_max_batch_caps_one_engine_call(tmp_path: Path) -> None:
    backend = FakeBackend(delay_s=0.05)

    async def scenario() -> None:
        app = create_app(backend, ServeSettings(max_batch=3, batch_window_ms=50), tmp_path / "snapshots")
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            responses = await asyncio.gather(*[
                client.post("/v1/chat/completions", json={"model": "base", "messages": HI, "max_tokens": 1})
                for _ in range(7)])
            assert all(r.status_code == 200 for r in responses)

    asyncio.run(scenario())
    assert sum(n for n, _ in backend.calls) == 7 and max(n for n, _ in backend.calls) <= 3


# -- adapters ------------------------------------------------------------------------------------

def test_adapter_lifecycle_and_vllm_reload_rule(backend: FakeBackend, tmp_path: Path) -> None:
    v1 = _adapter(tmp_path / "a1", b"x" * 10)
    v2 = _adapter(tmp_path / "a2", b"x" * 20)
    with _client(backend, tmp_path) as client:
        load = client.post("/v1/load_lora_adapter", json={"lora_name": "hb-v1", "lora_path": str(v1)})
        assert load.status_code == 200 and load.text == "Success: LoRA adapter 'hb-v1' added successfully."
        models = client.get("/v1/models").json()["data"]
        assert [(m["id"], m["parent"], m["root"]) for m in models] == [
            ("base", None, "/models/fake"), ("hb-v1", "base", str(v1))]
        assert _chat(client, "hb-v1", max_tokens=1).json()["choices"][0]["message"]["content"] == "lora10"
        assert _chat(client, "hb-v1", max_tokens=1).json()["model"] == "hb-v1"
        # Same weights, even from another folder: a no-op. Different weights under the name: refused.
        copy = _adapter(tmp_path / "copy", b"x" * 10)
        assert client.post("/v1/load_lora_adapter", json={"lora_name": "hb-v1", "lora_path": str(copy)}).status_code == 200
        _error(client.post("/v1/load_lora_adapter", json={"lora_name": "hb-v1", "lora_path": str(v2)}), 400,
               "adapter_name_in_use")
        # Weights rewritten in place do not reach the loaded name (it serves a snapshot).
        (v1 / "adapter_model.safetensors").write_bytes(b"y" * 30)
        _error(client.post("/v1/load_lora_adapter", json={"lora_name": "hb-v1", "lora_path": str(v1)}), 400,
               "adapter_name_in_use")
        assert _chat(client, "hb-v1", max_tokens=1).json()["choices"][0]["message"]["content"] == "lora10"

        unload = client.post("/v1/unload_lora_adapter", json={"lora_name": "hb-v1"})
        assert unload.status_code == 200 and "removed" in unload.text
        _error(_chat(client, "hb-v1"), 404, "model_not_found")
        _error(client.post("/v1/unload_lora_adapter", json={"lora_name": "hb-v1"}), 404, "model_not_found")
        # After an unload the name may take new weights.
        assert client.post("/v1/load_lora_adapter", json={"lora_name": "hb-v1", "lora_path": str(v2)}).status_code == 200


def test_adapter_load_errors(backend: FakeBackend, tmp_path: Path) -> None:
    broken = _adapter(tmp_path / "broken", config='{"broken": true}')
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "adapter_config.json").write_text("{}")
    with _client(backend, tmp_path, max_loras=1) as client:
        def load(name: Any, path: Any) -> httpx.Response:
            return client.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})

        _error(load("x-v1", str(tmp_path / "missing")), 404, "adapter_not_found")
        _error(load("x-v1", str(tmp_path)), 400, "invalid_adapter")
        _error(load("x-v1", str(no_weights)), 400, "invalid_adapter")
        _error(load("x-v1", str(broken)), 400, "adapter_load_failed")
        _error(load("base", str(_adapter(tmp_path / "ok"))), 400, "invalid_value")
        _error(load("../evil", str(_adapter(tmp_path / "ok"))), 400, "invalid_value")
        _error(load(5, "x"), 400, "invalid_value")
        _error(client.post("/v1/load_lora_adapter", json={"lora_name": "x-v1"}), 400, "missing_field")
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["base"]
        assert load("x-v1", str(_adapter(tmp_path / "ok"))).status_code == 200
        _error(load("x-v2", str(_adapter(tmp_path / "ok2", b"other"))), 400, "too_many_adapters")


def test_startup_adapters_and_routes(backend: FakeBackend, tmp_path: Path) -> None:
    from pipelines.serve.protocol import RouteRequest

    a = _adapter(tmp_path / "a", b"a")
    b = _adapter(tmp_path / "b", b"bb")
    route = RouteRequest(name="hb", weights={"hb-v1": 1, "hb-v2": 1})
    with _client(backend, tmp_path, adapters={"hb-v1": str(a), "hb-v2": str(b)}, routes=[route]) as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["base", "hb-v1", "hb-v2"]
        assert [_chat(client, "hb", max_tokens=1).json()["model"] for _ in range(4)] == ["hb-v1", "hb-v2"] * 2


def test_startup_fails_on_a_bad_adapter(backend: FakeBackend, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="--adapter hb-v1="), \
            _client(backend, tmp_path, adapters={"hb-v1": str(tmp_path / "missing")}):
        pass


# -- routes --------------------------------------------------------------------------------------

def test_round_robin_is_exact_and_interleaved() -> None:
    route = Route("hb", {"v1": 70, "v2": 30})
    picks = [route.pick("") for _ in range(100)]
    assert Counter(picks) == {"v1": 70, "v2": 30}
    assert Counter(picks[:10]) == {"v1": 7, "v2": 3}
    assert route.describe()["served"] == {"v1": 70, "v2": 30}
    with_zero = Route("hb", {"v1": 90, "v2": 10, "off": 0})
    assert Counter(with_zero.pick("") for _ in range(50)) == {"v1": 45, "v2": 5}


def test_hash_routing_is_sticky_and_follows_the_weights() -> None:
    route = Route("hb", {"v1": 80, "v2": 20}, strategy="hash")
    assert len({route.pick("user-42") for _ in range(20)}) == 1
    counts = Counter(route.pick(f"user-{i}") for i in range(4000))
    assert 0.77 < counts["v1"] / 4000 < 0.83


def test_random_routing_is_seeded() -> None:
    runs = [[route.pick("") for _ in range(200)]
            for route in (Route("hb", {"v1": 50, "v2": 50}, strategy="random", seed=seed) for seed in (3, 3, 4))]
    assert runs[0] == runs[1] != runs[2]
    assert 70 < runs[0].count("v1") < 130


def test_routes_api(backend: FakeBackend, tmp_path: Path) -> None:
    with _client(backend, tmp_path) as client:
        for name, size in (("hb-v1", 1), ("hb-v2", 2)):
            path = str(_adapter(tmp_path / name, b"x" * size))
            assert client.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path}).status_code == 200
        created = client.post("/v1/routes", json={"name": "hb", "weights": {"hb-v1": 90, "hb-v2": 10}})
        assert created.status_code == 200 and created.json()["strategy"] == "round_robin"
        served = Counter(_chat(client, "hb", max_tokens=1).json()["model"] for _ in range(20))
        assert served == {"hb-v1": 18, "hb-v2": 2}
        # Sticky by the request's `user`.
        client.post("/v1/routes", json={"name": "hb", "weights": {"hb-v1": 50, "hb-v2": 50}, "strategy": "hash"})
        assert len({_chat(client, "hb", max_tokens=1, user="alice").json()["model"] for _ in range(5)}) == 1
        listed = client.get("/v1/routes").json()["data"]
        assert [(r["name"], r["weights"], r["strategy"]) for r in listed] == [
            ("hb", {"hb-v1": 50, "hb-v2": 50}, "hash")]

        _error(client.post("/v1/unload_lora_adapter", json={"lora_name": "hb-v2"}), 409, "adapter_in_use")
        _error(client.post("/v1/routes", json={"name": "x", "weights": {"ghost": 1}}), 404, "model_not_found")
        _error(client.post("/v1/routes", json={"name": "x", "weights": {"hb": 1}}), 400, "invalid_value")
        _error(client.post("/v1/routes", json={"name": "base", "weights": {"hb-v1": 1}}), 400, "invalid_value")
        _error(client.post("/v1/routes", json={"name": "x", "weights": {"hb-v1": 0}}), 400, "invalid_value")
        _error(client.post("/v1/routes", json={"name": "x", "weights": {"hb-v1": 1.5}}), 400, "invalid_value")
        _error(client.post("/v1/routes", json={"name": "x", "weights": {}}), 400, "invalid_value")
        _error(client.post("/v1/load_lora_adapter", json={"lora_name": "hb", "lora_path": str(tmp_path / "hb-v1")}),
               400, "invalid_value")
        # Rollback: all traffic to the champion, then the challenger can go.
        client.post("/v1/routes", json={"name": "hb", "weights": {"hb-v1": 100}})
        assert client.post("/v1/unload_lora_adapter", json={"lora_name": "hb-v2"}).status_code == 200
        assert client.delete("/v1/routes/hb").status_code == 200
        _error(client.delete("/v1/routes/hb"), 404, "route_not_found")
        _error(_chat(client, "hb"), 404, "model_not_found")


# -- faults --------------------------------------------------------------------------------------

def test_faults_hit_only_their_model(backend: FakeBackend, tmp_path: Path) -> None:
    with _client(backend, tmp_path, enable_fault_injection=True) as client:
        for name, size in (("hb-v1", 1), ("hb-v2", 2)):
            path = str(_adapter(tmp_path / name, b"x" * size))
            client.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})
        assert client.post("/v1/faults", json={"model": "hb-v2", "error_rate": 1.0}).status_code == 200
        client.post("/v1/routes", json={"name": "hb", "weights": {"hb-v1": 1, "hb-v2": 1}})
        statuses = {name: [_chat(client, name, max_tokens=1).status_code for _ in range(3)]
                    for name in ("hb-v1", "hb-v2", "base")}
        assert statuses == {"hb-v1": [200] * 3, "hb-v2": [500] * 3, "base": [200] * 3}
        routed = [_chat(client, "hb", max_tokens=1) for _ in range(4)]
        assert [r.status_code for r in routed] == [200, 500, 200, 500]  # faults follow the served adapter
        _error(routed[1], 500, "injected_fault")

        assert client.post("/v1/faults", json={"model": "hb-v1", "latency_s": 0.3}).status_code == 200
        started = time.monotonic()
        assert _chat(client, "hb-v1", max_tokens=1).status_code == 200
        assert time.monotonic() - started >= 0.3
        faults = {f["model"]: f for f in client.get("/v1/faults").json()["data"]}
        assert faults["hb-v2"]["injected_errors"] == 5 and faults["hb-v1"]["delayed"] == 1

        _error(client.post("/v1/faults", json={"model": "hb", "error_rate": 1}), 400)
        _error(client.post("/v1/faults", json={"model": "ghost", "error_rate": 1}), 404)
        _error(client.post("/v1/faults", json={"model": "hb-v1", "error_rate": 1.5}), 400)
        assert client.post("/v1/faults", json={"model": "hb-v2"}).json()["cleared"] is True
        assert client.delete("/v1/faults").json()["cleared"] == 1
        assert [_chat(client, "hb-v2", max_tokens=1).status_code for _ in range(2)] == [200, 200]


def test_error_rate_is_seeded(backend: FakeBackend, tmp_path: Path) -> None:
    def run() -> list[int]:
        with _client(backend, tmp_path, enable_fault_injection=True) as client:
            client.post("/v1/faults", json={"model": "base", "error_rate": 0.5, "seed": 11})
            return [_chat(client, max_tokens=1).status_code for _ in range(12)]

    first = run()
    assert first == run() and 200 in first and 500 in first


# -- metrics, auth, logs -------------------------------------------------------------------------

def test_metrics_names_labels_and_increments(backend: FakeBackend, tmp_path: Path) -> None:
    adapter = str(_adapter(tmp_path / "a", b"abc"))
    with _client(backend, tmp_path, adapters={"hb-v1": adapter}) as client:
        before = _samples(client)
        assert before[("vllm:num_requests_running", frozenset({("model_name", "base")}))] == 0
        for _ in range(2):
            assert _chat(client, max_tokens=3).status_code == 200
        assert _chat(client, "hb-v1", max_tokens=2).status_code == 200
        _chat(client, "ghost")
        _chat(client, max_tokens="x")
        _chat(client, max_tokens=70)  # over the context: refused once the model resolved
        after = _samples(client)

    def value(name: str, **labels: str) -> float:
        return after.get((name, frozenset(labels.items())), 0.0)

    assert value("vllm:request_success_total", model_name="base", finished_reason="length") == 2
    assert value("vllm:request_success_total", model_name="hb-v1", finished_reason="length") == 1
    assert value("vllm:prompt_tokens_total", model_name="base") == 8
    assert value("vllm:generation_tokens_total", model_name="base") == 6
    assert value("vllm:generation_tokens_total", model_name="hb-v1") == 2
    assert value("vllm:e2e_request_latency_seconds_count", model_name="base") == 2
    assert value("vllm:time_to_first_token_seconds_count", model_name="hb-v1") == 1
    assert value("vllm:request_queue_time_seconds_count", model_name="base") == 2
    # The endpoint picker's per-target series: requests counted once resolved, errors before that unlabelled.
    assert value("inference_objective_request_total", model_name="base", target_model_name="base") == 3
    assert value("inference_objective_request_total", model_name="hb-v1", target_model_name="hb-v1") == 1
    assert value("inference_objective_request_duration_seconds_count", model_name="base",
                 target_model_name="base") == 2
    assert value("inference_objective_request_error_total", model_name="", target_model_name="",
                 error_code="BadRequest") == 2  # the unknown model, max_tokens="x"
    assert value("inference_objective_request_error_total", model_name="base", target_model_name="base",
                 error_code="ModelServerError") == 1
    assert value("http_requests_total", handler="/v1/chat/completions", method="POST", status="2xx") == 3
    assert value("http_requests_total", handler="/v1/chat/completions", method="POST", status="4xx") == 3
    assert any(name == "vllm:lora_requests_info" for name, _ in after)


def test_api_key(backend: FakeBackend, tmp_path: Path) -> None:
    with _client(backend, tmp_path, api_key="s3cret") as client:
        _error(_chat(client), 401, "invalid_api_key")
        _error(client.post("/v1/chat/completions", json={"model": "base", "messages": HI},
                           headers={"Authorization": "Bearer wrong"}), 401)
        ok = client.post("/v1/chat/completions", json={"model": "base", "messages": HI, "max_tokens": 1},
                         headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200


def test_logs_carry_no_prompt_or_completion_text(backend: FakeBackend, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with _client(backend, tmp_path) as client:
        _chat(client, max_tokens=2, messages=[{"role": "user", "content": "patient Zyxw-4711"}])
        _chat(client, messages=[{"role": "user", "content": "Zyxw-4711 FAIL"}])
        _chat(client, messages=[{"role": "user", "content": "Zyxw-4711 " * 80}])
    assert "serve: chat model=base status=200" in caplog.text
    assert "Zyxw-4711" not in caplog.text and "w0" not in caplog.text


# -- the command ---------------------------------------------------------------------------------

def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_command_refuses_non_loopback_without_allow_remote(capsys: pytest.CaptureFixture[str]) -> None:
    assert handle(_args("--host", "0.0.0.0")) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert handle(_args("--api-key-env", "EUROLORA_TEST_UNSET_KEY_VAR")) == 2


def test_command_defaults() -> None:
    args = _args()
    assert (args.host, args.port, args.model, args.served_model_name) == ("127.0.0.1", 8000, "embedded", "base")
    assert args.enable_fault_injection is False


def test_parse_adapters(tmp_path: Path) -> None:
    assert parse_adapters([f"hb-v1={tmp_path}"]) == {"hb-v1": str(tmp_path.resolve())}
    for bad in (["nope"], ["=x"], ["a="], ["a=x", "a=y"]):
        with pytest.raises(ValueError):
            parse_adapters(bad)


def test_load_routes(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("routes:\n  - name: hb\n    weights: {hb-v1: 90, hb-v2: 10}\n    strategy: hash\n")
    [route] = load_routes(path)
    assert (route.name, route.weights, route.strategy) == ("hb", {"hb-v1": 90, "hb-v2": 10}, "hash")
    path.write_text("- name: hb\n  weights: {hb-v1: -1}\n- name: ''\n  weights: {}\n")
    with pytest.raises(ValueError, match="weights"):
        load_routes(path)


def test_serve_is_registered_in_the_cli() -> None:
    from pipelines.cli import COMMAND_MODULES

    assert "pipelines.serve.command" in COMMAND_MODULES, "add pipelines.serve.command to pipelines/cli.py"
