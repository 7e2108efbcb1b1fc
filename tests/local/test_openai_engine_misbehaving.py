"""The `openai` engine against a real, misbehaving OpenAI-compatible server process over HTTP, on its own
and as the engine of the generate_qa step."""

import logging
import time

import pytest

from pipelines.local.processes import free_port
from steps.common.contract import RuntimeContext, TransientError
from steps.common.engines.base import EngineSettings, GenerationRequest, OpenAISettings
from steps.common.engines.openai_engine import OpenAIEngine
from steps.common.residency import ResidencyPolicy
from steps.generate_qa import GenerateQAInputs, NoQAPairs, run
from steps.generate_qa.generate import TooManyFailedRequests
from steps.generate_qa.settings import GenerateQASettings
from tests.fixtures.demo_steps import DemoIngest
from tests.fixtures.llm_servers import MisbehavingServer


def _engine(base_url: str, **overrides: object) -> OpenAIEngine:
    values = {"base_url": base_url, "concurrency": 4, "timeout_s": 1.0, "max_retries": 2, "backoff_s": 0.01}
    values.update(overrides)
    return OpenAIEngine(OpenAISettings(**values), ResidencyPolicy())


def _req(model: str, content: str = "hello", **kw: object) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": content}], adapter=model, **kw)


@pytest.fixture
def server(misbehaving_openai_server: MisbehavingServer) -> MisbehavingServer:
    misbehaving_openai_server.reset()
    return misbehaving_openai_server


def test_ok_in_order_under_the_path_prefix(server: MisbehavingServer) -> None:
    requests = [_req(f"ok:{i}", f"message {i}") for i in range(12)]
    with _engine(server.base_url) as engine:
        results = engine.generate(requests)
    assert [r.text for r in results] == [f"echo:message {i}" for i in range(12)]
    assert {(r.finish_reason, r.completion_tokens, r.error) for r in results} == {("stop", 2, None)}
    assert server.stats()["total"] == 12  # served under /prefix/v1: the server has no other route


def test_path_prefix_dropped_is_a_404_not_retried(server: MisbehavingServer) -> None:
    with _engine(server.root + "/v1") as engine:
        [result] = engine.generate([_req("ok:noprefix")])
    assert (result.finish_reason, result.error) == ("error", "HTTP 404 (NotFoundError)")


# mode -> (finish_reason, error substring or None, attempts seen by the server); max_retries=2
BEHAVIOURS = {
    "length": ("length", None, 1),
    "500": ("error", "HTTP 500 (InternalServerError) (after 3 attempts)", 3),
    "fail500x2": ("stop", None, 3),
    "429x2": ("stop", None, 3),
    "429": ("error", "HTTP 429 (RateLimitError) (after 3 attempts)", 3),
    "400": ("error", "HTTP 400 (BadRequestError)", 1),
    "hang": ("error", "timeout after 1s (after 3 attempts)", 3),
    "trickle": ("error", "timeout after 1s (after 3 attempts)", 3),
    "dropped": ("error", "connection broken", 3),
    "truncated": ("error", "malformed response: body is not valid JSON", 1),
    "nonjson": ("error", "malformed response: body is not valid JSON", 1),
    "wrongshape": ("error", "malformed response: no choices[0] object", 1),
    "nullcontent": ("error", "malformed response: choices[0].message.content is not a string", 1),
    "filtered": ("error", "unexpected finish_reason content_filter", 1),
    "redirect": ("error", "HTTP 307", 1),  # never followed: it could leave the residency policy
}


@pytest.mark.parametrize("mode", list(BEHAVIOURS))
def test_behaviour(server: MisbehavingServer, mode: str) -> None:
    finish, error, attempts = BEHAVIOURS[mode]
    secret_prompt = f"patient record {mode} 4711"
    with _engine(server.base_url) as engine:
        bad, good = engine.generate([_req(f"{mode}:t", secret_prompt), _req("ok:companion", "hi")])
    assert bad.finish_reason == finish
    if error is None:
        assert bad.error is None and bad.text
    else:
        assert error in bad.error
        assert "4711" not in bad.error and "patient" not in bad.error  # no prompt text in errors
    assert (good.finish_reason, good.text) == ("stop", "echo:hi")  # one bad request spoils nothing
    assert server.stats()["attempts"][f"{mode}:t"] == attempts


def test_concurrency_is_bounded(server: MisbehavingServer) -> None:
    # Each request is held until 4 are in flight: a client that never reaches 4 shows a lower peak
    # (after a 10 s stall per request), a client above 4 a higher one. No wall-clock assertion.
    requests = [_req(f"gather4:{i}", f"m{i}") for i in range(20)]
    with _engine(server.base_url, concurrency=4, timeout_s=30) as engine:
        results = engine.generate(requests)
    assert [r.text for r in results] == [f"echo:m{i}" for i in range(20)]
    stats = server.stats()
    assert stats["max_gathered"] == 4
    assert stats["total"] == 20  # no request timed out and was retried


def test_retry_after_is_honoured(server: MisbehavingServer) -> None:
    started = time.monotonic()
    with _engine(server.base_url, backoff_s=0.01) as engine:
        [result] = engine.generate([_req("429ra1:x")])
    assert result.finish_reason == "stop"
    assert time.monotonic() - started >= 1.0
    assert server.stats()["attempts"]["429ra1:x"] == 2


def test_endpoint_down_raises_transient_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    started = time.monotonic()
    with _engine(url, max_retries=2, backoff_s=0.05) as engine, \
            pytest.raises(TransientError, match="answered none of 50 requests"):
        engine.generate([_req(f"ok:{i}") for i in range(50)])
    assert time.monotonic() - started < 5  # fails fast instead of retrying 50 requests one by one


def test_every_request_timing_out_raises_transient(server: MisbehavingServer) -> None:
    with _engine(server.base_url, timeout_s=0.5, max_retries=0) as engine, \
            pytest.raises(TransientError, match="timeout"):
        engine.generate([_req("hang:a"), _req("hang:b")])


def test_every_request_answered_with_500_is_not_transient(server: MisbehavingServer) -> None:
    """A server that answers 500 to everything (e.g. llama.cpp given json_schema) is a config error."""
    with _engine(server.base_url, max_retries=0) as engine:
        results = engine.generate([_req("500:a"), _req("500:b")])
    assert {r.finish_reason for r in results} == {"error"}


def test_request_body(server: MisbehavingServer) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    with OpenAIEngine(
        OpenAISettings(base_url=server.base_url, model="json:base", concurrency=2, backoff_s=0.01),
        ResidencyPolicy(), temperature=0.7, seed=42,
    ) as engine:
        _plain, constrained = engine.generate([
            GenerationRequest(messages=[{"role": "user", "content": "q"}], max_new_tokens=17),
            _req("json:adapter-v3", json_schema=schema),
        ])
    assert constrained.text == '{"answer": "yes", "score": 3}'
    bodies = server.stats()["bodies"]
    assert bodies["json:base"] == {  # settings.model when the request names no adapter
        "model": "json:base", "messages": [{"role": "user", "content": "q"}],
        "max_tokens": 17, "temperature": 0.7, "seed": 42,
    }
    assert bodies["json:adapter-v3"]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    with OpenAIEngine(OpenAISettings(response_format_style="json_object", base_url=server.base_url), ResidencyPolicy()) as engine:
        engine.generate([_req("json:llamacpp-style", json_schema=schema)])
    assert server.stats()["bodies"]["json:llamacpp-style"]["response_format"] == {
        "type": "json_object", "schema": schema,
    }


def test_api_key_sent_as_bearer_never_logged(
    server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-eu-SECRET-9f8e7d"
    monkeypatch.setenv("EUROLORA_LLM_API_KEY", secret)
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    with _engine(server.base_url) as engine:
        results = engine.generate(
            [_req("ok:key", "prompt-text-xyz"), _req("500:key", "prompt-text-xyz"), _req("400:key", "prompt-text-xyz")]
        )
        assert secret not in repr(engine)
    assert results[0].finish_reason == "stop"
    auth = server.stats()["auth"]
    assert auth["ok:key"] == auth["500:key"] == f"Bearer {secret}"
    assert caplog.records and "openai engine" in caplog.text
    assert secret not in caplog.text
    assert "prompt-text-xyz" not in caplog.text
    assert all(secret not in (r.error or "") for r in results)


def test_proxy_variables_are_ignored(server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would carry traffic to a host the residency policy never checked."""
    dead = f"http://127.0.0.1:{free_port()}"
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(var, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with _engine(server.base_url) as engine:
        [result] = engine.generate([_req("ok:proxy")])
    assert result.finish_reason == "stop"


def test_no_key_no_authorization_header(server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EUROLORA_LLM_API_KEY", raising=False)
    with _engine(server.base_url) as engine:
        engine.generate([_req("ok:nokey")])
    assert server.stats()["auth"]["ok:nokey"] is None


def _generate_qa(server: MisbehavingServer, demo_ingest: DemoIngest, mode: str, run_id: str,
                 **settings: object) -> RuntimeContext:
    """generate_qa on 2 demo chunks (4 requests, one at a time) with every request sent as model `mode`."""
    engine = EngineSettings(kind="openai", openai=OpenAISettings(
        base_url=server.base_url, model=f"{mode}:{run_id}", concurrency=1, timeout_s=5, max_retries=0))
    context = demo_ingest.context.model_copy(update={"run_id": run_id})
    run(GenerateQAInputs(context=context, chunks_uri=demo_ingest.outputs.chunks_uri, settings=GenerateQASettings(
        engine=engine, max_chunks=2, pairs_per_chunk=1, unanswerable_per_chunk=1, **settings)))
    return context


def _nothing_published(context: RuntimeContext) -> bool:
    return not context.store().exists(context.output_uri("generate_qa", "qa"))


def test_step_against_an_endpoint_that_always_fails_publishes_nothing(
        server: MisbehavingServer, demo_ingest: DemoIngest) -> None:
    with pytest.raises(TooManyFailedRequests, match=r"failed 4 of 4 requests .*HTTP 500 \(InternalServerError\)"):
        _generate_qa(server, demo_ingest, "500", "always500")
    assert _nothing_published(demo_ingest.context.model_copy(update={"run_id": "always500"}))
    assert server.stats()["attempts"]["500:always500"] == 4
    # Without the cap every request still ends as a rejected pair, and no pair means no dataset.
    with pytest.raises(NoQAPairs, match=r"'generation_error': 4"):
        _generate_qa(server, demo_ingest, "500", "always500-uncapped", max_failed_request_fraction=1.0)
    assert _nothing_published(demo_ingest.context.model_copy(update={"run_id": "always500-uncapped"}))


def test_failed_request_fraction_cap_is_configurable(server: MisbehavingServer, demo_ingest: DemoIngest) -> None:
    # The first request of 4 gets a 500 (25%), the other 3 are answered (with non-JSON: no pair either).
    with pytest.raises(TooManyFailedRequests, match=r"failed 1 of 4 requests \(25%"):
        _generate_qa(server, demo_ingest, "fail500x1", "cap20", max_failed_request_fraction=0.2)
    with pytest.raises(NoQAPairs, match=r"'generation_error': 1, 'invalid_json': 3"):
        _generate_qa(server, demo_ingest, "fail500x1", "cap30", max_failed_request_fraction=0.3)
    for run_id in ("cap20", "cap30"):
        assert _nothing_published(demo_ingest.context.model_copy(update={"run_id": run_id}))
