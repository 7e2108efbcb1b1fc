"""The `openai` engine without a server: residency, URLs, request bodies, response parsing, backoff."""

import json
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.engines import make_engine
from steps.common.engines.base import EngineSettings, GenerationRequest, OpenAISettings
from steps.common.engines.openai_engine import (
    MAX_BACKOFF_S,
    OpenAIEngine,
    build_payload,
    chat_completions_url,
    parse_completion,
    response_format,
)
from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.common.storage import StorageSettings

EU_POLICY = ResidencyPolicy(allowed_hosts=["127.0.0.1", "llm.example.eu", "*.svc.cluster.local"],
                            plain_http_hosts=["127.0.0.1", "*.svc.cluster.local"])


@pytest.mark.parametrize("url", [
    "https://api.openai.com/v1",
    "https://eu@us-east-1.example.com/v1",
    "https://llm.example.eu@api.openai.com/v1",
    "https://llm.example.eu.attacker.com/v1",
    "http://llm.example.eu/v1",  # plain http outside the cluster
    "ftp://llm.example.eu/v1",
])
def test_residency_refuses_before_any_call(url: str) -> None:
    with pytest.raises(ResidencyError, match="openai.base_url"):
        OpenAIEngine(OpenAISettings(base_url=url), EU_POLICY)


@pytest.mark.parametrize("url", [
    "https://llm.example.eu/v1", "http://vllm.ml.svc.cluster.local:8000/v1", "http://127.0.0.1:8000/v1",
])
def test_residency_accepts_allowed_hosts(url: str) -> None:
    OpenAIEngine(OpenAISettings(base_url=url), EU_POLICY).close()


@pytest.mark.parametrize(("base", "url"), [
    ("http://h:1/v1", "http://h:1/v1/chat/completions"),
    ("http://h:1/v1/", "http://h:1/v1/chat/completions"),
    ("https://h/prefix/v1", "https://h/prefix/v1/chat/completions"),
    ("https://h/prefix/v1/", "https://h/prefix/v1/chat/completions"),
    ("https://h", "https://h/chat/completions"),
])
def test_url_keeps_path_prefix(base: str, url: str) -> None:
    assert chat_completions_url(base) == url


def test_payload() -> None:
    req = GenerationRequest(messages=[{"role": "user", "content": "q"}], max_new_tokens=9)
    assert build_payload(req, model="base", temperature=0.0, seed=None, style="json_schema") == {
        "model": "base", "messages": [{"role": "user", "content": "q"}], "max_tokens": 9, "temperature": 0.0,
    }
    schema = {"type": "object"}
    with_adapter = req.model_copy(update={"adapter": "support-v7", "json_schema": schema})
    payload = build_payload(with_adapter, model="base", temperature=0.5, seed=3, style="json_object")
    assert (payload["model"], payload["seed"]) == ("support-v7", 3)
    assert payload["response_format"] == {"type": "json_object", "schema": schema}
    assert response_format(schema, "json_schema") == {
        "type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    with pytest.raises(ValueError, match="response_format_style"):
        response_format(schema, "grammar")


def _body(**choice: object) -> bytes:
    base = {"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    return json.dumps({"choices": [{**base, **choice}], "usage": {"completion_tokens": 4}}).encode()


@pytest.mark.parametrize(("body", "finish", "error"), [
    (_body(), "stop", None),
    (_body(finish_reason="length"), "length", None),
    (_body(finish_reason="content_filter"), "error", "unexpected finish_reason content_filter"),
    (_body(finish_reason=None), "error", "unexpected finish_reason NoneType"),
    (_body(finish_reason="x" * 200), "error", "unexpected finish_reason str"),
    (_body(message={"content": None}), "error", "malformed response: choices[0].message.content"),
    (_body(message="hi"), "error", "malformed response: choices[0].message.content"),
    (b'{"choices": []}', "error", "malformed response: no choices[0] object"),
    (b'{"choices": [1]}', "error", "malformed response: no choices[0] object"),
    (b"[1, 2]", "error", "malformed response: expected a JSON object, got list"),
    (b'{"choices": [{"mess', "error", "malformed response: body is not valid JSON ("),
    (b"\xff\xfe<html>", "error", "malformed response: body is not valid JSON"),
])
def test_parse_completion(body: bytes, finish: str, error: str | None) -> None:
    result = parse_completion(body)
    assert result.finish_reason == finish
    assert (result.error is None) if error is None else (error in result.error)


def test_parse_completion_tolerates_bad_usage() -> None:
    body = json.dumps({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
                       "usage": {"completion_tokens": "many"}}).encode()
    assert parse_completion(body).completion_tokens == 0


def test_backoff_is_exponential_jittered_and_capped() -> None:
    engine = OpenAIEngine(OpenAISettings(backoff_s=1.0), ResidencyPolicy())
    try:
        for attempt in (1, 2, 3, 4):
            delays = [engine._backoff(attempt, None) for _ in range(200)]
            assert 0.5 * 2 ** (attempt - 1) <= min(delays) <= max(delays) <= 2 ** (attempt - 1)
            assert len(set(delays)) > 1  # jitter
        assert engine._backoff(20, None) <= MAX_BACKOFF_S
        assert engine._backoff(1, 7.0) == 7.0  # Retry-After wins when longer
        assert engine._backoff(1, 10_000.0) == MAX_BACKOFF_S
    finally:
        engine.close()


def test_make_engine_passes_sampling_settings_and_lifecycle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MY_KEY", "sk-unit-secret")
    settings = EngineSettings(kind="openai", temperature=0.3, seed=11,
                              openai=OpenAISettings(api_key_env="MY_KEY"))
    context = RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy())
    engine = make_engine(settings, context)
    assert isinstance(engine, OpenAIEngine)
    assert (engine._temperature, engine._seed) == (0.3, 11)
    assert "sk-unit-secret" not in repr(engine)
    assert engine.generate([]) == []  # nothing to do: no call, no error even if nothing listens
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(RuntimeError, match="after close"):
        engine.generate([GenerationRequest(messages=[{"role": "user", "content": "q"}])])


def test_unknown_response_format_style_refused() -> None:
    with pytest.raises(ValueError, match="response_format_style"):
        OpenAISettings(response_format_style="grammar")


def test_api_key_with_bad_characters_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EUROLORA_LLM_API_KEY", "sk-abc\ninjected: 1")
    with pytest.raises(ValueError, match="EUROLORA_LLM_API_KEY") as info:
        OpenAIEngine(OpenAISettings(), ResidencyPolicy())
    assert "sk-abc" not in str(info.value)
