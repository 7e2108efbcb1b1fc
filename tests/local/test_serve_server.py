"""`eurolora serve` as a real process on the embedded model (fixtures in tests/fixtures/serve.py).

Tiny budgets (max_tokens 1-12). Tests share one server: each uses adapter, route and fault names of
its own and removes what it set.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from steps.canary.serving import AdapterConflict, ReplicaClient
from steps.common.engines.base import GenerationRequest, OpenAISettings
from steps.common.engines.openai_engine import OpenAIEngine
from steps.common.residency import ResidencyPolicy
from tests.fixtures.serve import ServeServer

QUESTION = "What is the capital of France? Answer in one word."
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "sure": {"type": "boolean"}},
    "required": ["city", "sure"],
    "additionalProperties": False,
}


def _ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def _text(body: dict) -> str:
    return body["choices"][0]["message"]["content"]


def _assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def _load(server: ServeServer, name: str, path: Path) -> httpx.Response:
    return server.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})


def _metrics(server: ServeServer) -> dict[tuple[str, frozenset], float]:
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_chat_completion(eurolora_server: ServeServer) -> None:
    body = _ok(eurolora_server.chat("base", QUESTION, max_tokens=8))
    assert body["object"] == "chat.completion" and body["model"] == "base"
    assert body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5 and 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "Paris" in choice["message"]["content"]


def test_max_tokens_gives_finish_reason_length(eurolora_server: ServeServer) -> None:
    body = _ok(eurolora_server.chat("base", "Tell me a long story about a dragon.", max_tokens=3))
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_streaming_equals_non_streaming_for_greedy(eurolora_server: ServeServer) -> None:
    plain = _text(_ok(eurolora_server.chat("base", "Name three colours.", max_tokens=12)))
    chunks: list[dict] = []
    done = False
    body = {"model": "base", "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 12,
            "stream": True, "stream_options": {"include_usage": True}}
    with eurolora_server.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                continue
            assert line.startswith("data: "), line
            payload = line.removeprefix("data: ")
            if payload == "[DONE]":
                done = True
                continue
            assert not done, "data after [DONE]"
            chunks.append(json.loads(payload))
    assert done
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "base" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    content_chunks = [c for c in chunks if c["choices"]]
    assert content_chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len(content_chunks) >= 3  # role, at least one piece, the finish chunk
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in content_chunks)
    assert streamed == plain
    assert content_chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_temperature_and_seed_are_honoured(eurolora_server: ServeServer) -> None:
    prompt = "Write a short poem about the sea."

    def sample(seed: int) -> str:
        return _text(_ok(eurolora_server.chat("base", prompt, max_tokens=8, temperature=1.5, seed=seed)))

    first = sample(1)
    assert sample(1) == first  # seeded sampling is reproducible
    assert sample(2) != first  # ... and the seed and temperature reach the engine
    greedy = _text(_ok(eurolora_server.chat("base", prompt, max_tokens=8)))
    assert _text(_ok(eurolora_server.chat("base", prompt, max_tokens=8, temperature=0))) == greedy


def test_json_schema_response_format(eurolora_server: ServeServer) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
    body = _ok(eurolora_server.chat("base", "Which city is the capital of Germany? Reply in JSON.", max_tokens=40,
                                    response_format=response_format))
    assert body["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(_text(body)), SCHEMA)


def test_models_lists_base(eurolora_server: ServeServer) -> None:
    body = _ok(eurolora_server.get("/v1/models"))
    assert body["object"] == "list"
    base = next(m for m in body["data"] if m["id"] == "base")
    assert base["object"] == "model" and base["parent"] is None and base["max_model_len"] > 0


def test_adapter_load_list_generate_refuse_unload(eurolora_server: ServeServer,
                                                  random_lora_adapters: tuple[Path, Path]) -> None:
    lora_a, lora_b = random_lora_adapters
    assert _load(eurolora_server, "life-v1", lora_a).status_code == 200
    try:
        models = {m["id"]: m for m in _ok(eurolora_server.get("/v1/models"))["data"]}
        assert models["life-v1"]["parent"] == "base" and models["life-v1"]["root"] == str(lora_a)

        base = _ok(eurolora_server.chat("base", QUESTION, max_tokens=8))
        tuned = _ok(eurolora_server.chat("life-v1", QUESTION, max_tokens=8))
        assert tuned["model"] == "life-v1"
        assert _text(tuned) != _text(base)
        # The base model is unaffected by the loaded adapter.
        assert _text(_ok(eurolora_server.chat("base", QUESTION, max_tokens=8))) == _text(base)

        # Same weights again: idempotent. Different weights under the same name: refused (vLLM's rule).
        assert _load(eurolora_server, "life-v1", lora_a).status_code == 200
        _assert_error(_load(eurolora_server, "life-v1", lora_b), 400, "adapter_name_in_use")
        assert _text(_ok(eurolora_server.chat("life-v1", QUESTION, max_tokens=8))) == _text(tuned)
    finally:
        assert eurolora_server.post("/v1/unload_lora_adapter", {"lora_name": "life-v1"}).status_code == 200
    assert "life-v1" not in {m["id"] for m in _ok(eurolora_server.get("/v1/models"))["data"]}
    _assert_error(eurolora_server.chat("life-v1", QUESTION, max_tokens=1), 404, "model_not_found")
    _assert_error(eurolora_server.post("/v1/unload_lora_adapter", {"lora_name": "life-v1"}), 404)


def test_weights_rewritten_in_place_do_not_reach_a_loaded_name(eurolora_server: ServeServer,
                                                               random_lora_adapters: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    import shutil

    lora_a, lora_b = random_lora_adapters
    folder = shutil.copytree(lora_a, tmp_path / "adapter")
    assert _load(eurolora_server, "inplace-v1", folder).status_code == 200
    replica = ReplicaClient(eurolora_server.base_url, ResidencyPolicy(), timeout_s=120)
    try:
        before = _text(_ok(eurolora_server.chat("inplace-v1", QUESTION, max_tokens=6)))
        assert replica.load_adapter("inplace-v1", str(folder)) == "already_loaded"  # the canary's idempotent load
        shutil.copy2(lora_b / "adapter_model.safetensors", folder / "adapter_model.safetensors")
        _assert_error(_load(eurolora_server, "inplace-v1", folder), 400, "adapter_name_in_use")
        # Same name, same path, other files: the canary's client refuses too (it never trusts the path alone).
        with pytest.raises(AdapterConflict, match="already serves other weights"):
            replica.load_adapter("inplace-v1", str(folder))
        assert _text(_ok(eurolora_server.chat("inplace-v1", QUESTION, max_tokens=6))) == before
        assert _load(eurolora_server, "inplace-v2", folder).status_code == 200
        assert _text(_ok(eurolora_server.chat("inplace-v2", QUESTION, max_tokens=6))) != before
    finally:
        replica.close()
        for name in ("inplace-v1", "inplace-v2"):
            eurolora_server.post("/v1/unload_lora_adapter", {"lora_name": name})


def test_weighted_route_splits_exactly_and_names_the_served_adapter(
        eurolora_server: ServeServer, random_lora_adapters: tuple[Path, Path]) -> None:
    """Weights 7/3 over 20 concurrent requests (tests/unit covers 70/30 over 100 without a model)."""
    lora_a, lora_b = random_lora_adapters
    assert _load(eurolora_server, "route-v1", lora_a).status_code == 200
    assert _load(eurolora_server, "route-v2", lora_b).status_code == 200
    try:
        route = _ok(eurolora_server.post("/v1/routes", {"name": "route", "weights": {"route-v1": 7, "route-v2": 3}}))
        assert route["weights"] == {"route-v1": 7, "route-v2": 3}
        with eurolora_server.client() as client, ThreadPoolExecutor(8) as pool:
            body = {"model": "route", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
            responses = list(pool.map(lambda _: client.post("/v1/chat/completions", json=body), range(20)))
        served = [_ok(r)["model"] for r in responses]
        assert served.count("route-v1") == 14 and served.count("route-v2") == 6
        listed = next(r for r in _ok(eurolora_server.get("/v1/routes"))["data"] if r["name"] == "route")
        assert listed["served"] == {"route-v1": 14, "route-v2": 6}
        # A routed adapter cannot be unloaded; moving all traffic to v1 frees v2.
        _assert_error(eurolora_server.post("/v1/unload_lora_adapter", {"lora_name": "route-v2"}), 409)
        _ok(eurolora_server.post("/v1/routes", {"name": "route", "weights": {"route-v1": 100}}))
        assert {_ok(eurolora_server.chat("route", "Hi", max_tokens=1))["model"] for _ in range(2)} == {"route-v1"}
    finally:
        with eurolora_server.client() as client:
            client.delete("/v1/routes/route")
        for name in ("route-v1", "route-v2"):
            eurolora_server.post("/v1/unload_lora_adapter", {"lora_name": name})


def test_fault_injection_hits_one_adapter_only(eurolora_server: ServeServer,
                                               random_lora_adapters: tuple[Path, Path]) -> None:
    lora_a, lora_b = random_lora_adapters
    assert _load(eurolora_server, "fault-v1", lora_a).status_code == 200
    assert _load(eurolora_server, "fault-v2", lora_b).status_code == 200
    try:
        _ok(eurolora_server.post("/v1/faults", {"model": "fault-v2", "latency_s": 1.5, "error_rate": 0.5, "seed": 7}))
        before = _metrics(eurolora_server)
        statuses: dict[str, list[int]] = {"fault-v1": [], "fault-v2": []}
        for _ in range(4):
            for name, seen in statuses.items():
                started = time.monotonic()
                response = eurolora_server.chat(name, "Hi", max_tokens=1)
                elapsed = time.monotonic() - started
                seen.append(response.status_code)
                if name == "fault-v2":
                    assert elapsed >= 1.5, elapsed
                if response.status_code != 200:
                    _assert_error(response, 500, "injected_fault")
        assert statuses["fault-v1"] == [200] * 4
        assert 500 in statuses["fault-v2"] and 200 in statuses["fault-v2"]
        faults = {f["model"]: f for f in _ok(eurolora_server.get("/v1/faults"))["data"]}
        assert set(faults) == {"fault-v2"} and faults["fault-v2"]["delayed"] == 4
        assert faults["fault-v2"]["injected_errors"] == statuses["fault-v2"].count(500)
        after = _metrics(eurolora_server)
        name = "inference_objective_request_error_total"
        labels = {"model_name": "fault-v2", "target_model_name": "fault-v2", "error_code": "ModelServerError"}
        assert _sample(after, name, **labels) - _sample(before, name, **labels) == statuses["fault-v2"].count(500)
        e2e = "vllm:e2e_request_latency_seconds_sum"
        assert _sample(after, e2e, model_name="fault-v2") - _sample(before, e2e, model_name="fault-v2") >= 1.5
    finally:
        with eurolora_server.client() as client:
            client.delete("/v1/faults")
        for name in ("fault-v1", "fault-v2"):
            eurolora_server.post("/v1/unload_lora_adapter", {"lora_name": name})
    assert eurolora_server.chat("base", "Hi", max_tokens=1).status_code == 200


def _stream(server: ServeServer, body: dict) -> tuple[list[str], list[float], float]:
    """(content pieces, seconds from the request to each piece's arrival, seconds to [DONE])."""
    pieces, arrivals = [], []
    started = time.perf_counter()
    with server.client() as client, client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            payload = line.removeprefix("data: ")
            if payload == "[DONE]":
                return pieces, arrivals, time.perf_counter() - started
            if payload and (choices := json.loads(payload)["choices"]) and choices[0]["delta"].get("content"):
                pieces.append(choices[0]["delta"]["content"])
                arrivals.append(time.perf_counter() - started)
    raise AssertionError("the stream ended without [DONE]")


def test_tokens_stream_as_generated_and_ttft_is_the_first_token(eurolora_server: ServeServer) -> None:
    prompt = [{"role": "user", "content": "Write a long story about a lighthouse."}]
    before = _metrics(eurolora_server)
    pieces, arrivals, total = _stream(eurolora_server, {"model": "base", "messages": prompt, "max_tokens": 48})
    after = _metrics(eurolora_server)
    assert len(pieces) >= 24  # one piece per decoded token, many decoding steps
    # The first text arrives after one prefill and one step, long before the 48th token (a burst sent at
    # the end would arrive all at once, at the end).
    assert arrivals[0] < total / 2 and arrivals[-1] - arrivals[0] > total / 3, (arrivals[0], arrivals[-1], total)
    plain = _text(_ok(eurolora_server.chat("base", prompt[0]["content"], max_tokens=48)))
    assert "".join(pieces) == plain
    ttft = _sample(after, "vllm:time_to_first_token_seconds_sum", model_name="base") - _sample(
        before, "vllm:time_to_first_token_seconds_sum", model_name="base")
    e2e = _sample(after, "vllm:e2e_request_latency_seconds_sum", model_name="base") - _sample(
        before, "vllm:e2e_request_latency_seconds_sum", model_name="base")
    assert 0 < ttft < e2e / 3, (ttft, e2e)


def test_metrics_use_vllm_names_and_increment(eurolora_server: ServeServer) -> None:
    before = _metrics(eurolora_server)
    bodies = [_ok(eurolora_server.chat("base", "Hi", max_tokens=2)) for _ in range(3)]
    after = _metrics(eurolora_server)
    families = {name for name, _ in after}
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:request_success_total",
                 "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_count",
                 "vllm:e2e_request_latency_seconds_count", "vllm:lora_requests_info"):
        assert name in families, name

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    finished = [b["choices"][0]["finish_reason"] for b in bodies]
    for reason in set(finished):
        assert delta("vllm:request_success_total", model_name="base", finished_reason=reason) == finished.count(reason)
    assert delta("vllm:prompt_tokens_total", model_name="base") == sum(b["usage"]["prompt_tokens"] for b in bodies)
    assert delta("vllm:generation_tokens_total", model_name="base") == sum(
        b["usage"]["completion_tokens"] for b in bodies)
    assert delta("vllm:e2e_request_latency_seconds_count", model_name="base") == 3
    assert delta("vllm:time_to_first_token_seconds_count", model_name="base") == 3
    assert _sample(after, "vllm:num_requests_running", model_name="base") == 0
    assert _sample(after, "vllm:num_requests_waiting", model_name="base") == 0


@pytest.mark.parametrize(("request_body", "status", "code"), [
    ({"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]}, 404, "model_not_found"),
    (b"{not json", 400, "invalid_json"),
    ({"model": "base", "messages": "Hi"}, 400, None),
    ({"model": "base", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": "5"}, 400, None),
    ({"model": "base", "messages": [{"role": "user", "content": 5}]}, 400, None),
    ({"model": "base", "messages": [{"role": "user", "content": "Hi"}], "stream": "yes"}, 400, None),
    ({"model": "base"}, 400, "missing_field"),
    ({"model": "base", "messages": []}, 400, None),
    ({"messages": [{"role": "user", "content": "Hi"}]}, 400, "missing_field"),
    ({"model": "base", "messages": [{"role": "user", "content": "word " * 400}]}, 400, "context_length_exceeded"),
    ({"model": "base", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10 ** 6}, 400,
     "context_length_exceeded"),
    ({"model": "base", "messages": [{"role": "user", "content": "Hi"}],
      "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "strin"}}}}, 400, "invalid_schema"),
    ({"model": "base", "messages": [{"role": "user", "content": "Hi"}], "n": 2}, 400, "unsupported_value"),
], ids=["unknown-model", "malformed-json", "messages-not-list", "max-tokens-string", "content-int", "stream-string",
        "missing-messages", "empty-messages", "missing-model", "prompt-too-long", "max-tokens-over-context",
        "bad-schema", "n-2"])
def test_bad_requests_get_openai_errors(eurolora_server: ServeServer, request_body: object, status: int,
                                        code: str | None) -> None:
    with eurolora_server.client() as client:
        if isinstance(request_body, bytes):
            response = client.post("/v1/chat/completions", content=request_body,
                                   headers={"content-type": "application/json"})
        else:
            response = client.post("/v1/chat/completions", json=request_body)
    _assert_error(response, status, code)
    assert eurolora_server.get("/health").status_code == 200


def test_bad_admin_requests_get_openai_errors(eurolora_server: ServeServer, tmp_path: Path) -> None:
    _assert_error(_load(eurolora_server, "ghost-v1", tmp_path / "missing"), 404, "adapter_not_found")
    _assert_error(_load(eurolora_server, "ghost-v1", tmp_path), 400, "invalid_adapter")
    _assert_error(eurolora_server.post("/v1/load_lora_adapter", {"lora_name": "x"}), 400, "missing_field")
    _assert_error(eurolora_server.post("/v1/routes", {"name": "r", "weights": {"ghost-v1": 1}}), 404)
    _assert_error(eurolora_server.post("/v1/routes", {"name": "r", "weights": {"base": -1}}), 400)
    _assert_error(eurolora_server.post("/v1/faults", {"model": "ghost-v1", "error_rate": 1}), 404)
    _assert_error(eurolora_server.post("/v1/faults", {"model": "base", "error_rate": 2}), 400)
    _assert_error(eurolora_server.get("/v1/nothing-here"), 404)
    # ...and the server still answers.
    assert _ok(eurolora_server.chat("base", "Hi", max_tokens=1))["usage"]["completion_tokens"] == 1


def test_concurrent_requests_are_batched_streamed_or_not(eurolora_server: ServeServer) -> None:
    body = {"model": "base", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    before = _metrics(eurolora_server)

    def one(i: int) -> str:
        if i % 2:
            return "".join(_stream(eurolora_server, body)[0])
        return _text(_ok(eurolora_server.chat("base", "Hi", max_tokens=4)))

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(one, range(8)))
    after = _metrics(eurolora_server)
    calls = _sample(after, "eurolora_batch_size_count") - _sample(before, "eurolora_batch_size_count")
    assert 1 <= calls < 8  # 8 concurrent requests went to fewer engine calls
    # Greedy and identical prompts: batching and streaming do not change the answer.
    assert len(set(texts)) == 1 and texts[0], texts


def test_openai_engine_against_the_server(eurolora_server: ServeServer,
                                          random_lora_adapters: tuple[Path, Path]) -> None:
    lora_a, _ = random_lora_adapters
    assert _load(eurolora_server, "engine-v1", lora_a).status_code == 200
    try:
        settings = OpenAISettings(base_url=eurolora_server.base_url, model="base", concurrency=4, timeout_s=120,
                                  max_retries=0)
        with OpenAIEngine(settings, ResidencyPolicy()) as engine:
            results = engine.generate([
                GenerationRequest(messages=[{"role": "user", "content": QUESTION}], max_new_tokens=8),
                GenerationRequest(messages=[{"role": "user", "content": QUESTION}], max_new_tokens=8,
                                  adapter="engine-v1"),
                GenerationRequest(messages=[{"role": "user", "content": "Capital of Germany, in JSON."}],
                                  max_new_tokens=40, json_schema=SCHEMA),
                GenerationRequest(messages=[{"role": "user", "content": QUESTION}], max_new_tokens=8,
                                  adapter="not-loaded"),
            ])
        base, tuned, constrained, missing = results
        assert base.error is None and "Paris" in base.text
        assert tuned.error is None and tuned.text != base.text
        assert tuned.text == _text(_ok(eurolora_server.chat("engine-v1", QUESTION, max_tokens=8)))
        assert constrained.finish_reason == "stop"
        jsonschema.validate(json.loads(constrained.text), SCHEMA)
        assert missing.finish_reason == "error" and "404" in (missing.error or "")
    finally:
        eurolora_server.post("/v1/unload_lora_adapter", {"lora_name": "engine-v1"})


def test_logs_carry_no_prompt_text(eurolora_server: ServeServer) -> None:
    secret = "Zyxwvut-patient-record-4711"
    _ok(eurolora_server.chat("base", f"Summarise: {secret}", max_tokens=2))
    eurolora_server.chat("base", f"{secret} " * 400, max_tokens=2)  # refused: too long
    assert secret not in eurolora_server.log.read_text()
