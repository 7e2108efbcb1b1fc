"""The `openai` engine against an independent OpenAI-compatible server: llama-cpp-python's, on the
embedded SmolLM2 GGUF (CPU), request by request and as the generate_qa step's engine. Needs
`llama-cpp-python[server]==0.3.36` (the fixture says how)."""

import json
import time
from collections.abc import Callable

import jsonschema

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


def _engine(base_url: str, concurrency: int = 4, **overrides: object) -> OpenAIEngine:
    # llama.cpp's server takes a schema through "json_object" (it answers "json_schema" with HTTP 500).
    values = {"base_url": base_url, "model": "base", "concurrency": concurrency, "timeout_s": 60,
              "max_retries": 1, "backoff_s": 0.1, "response_format_style": "json_object", **overrides}
    return OpenAIEngine(OpenAISettings(**values), ResidencyPolicy())


def _ask(question: str, max_new_tokens: int = 24, **kw: object) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": question}], max_new_tokens=max_new_tokens, **kw)


def test_plain_chat_completion(llama_cpp_server: str) -> None:
    with _engine(llama_cpp_server) as engine:
        [result] = engine.generate([_ask("What is the capital of France? Answer in one word.")])
    assert result.error is None
    assert result.finish_reason in ("stop", "length")
    assert result.text.strip() and 0 < result.completion_tokens <= 24


def test_json_object_with_schema_is_enforced(llama_cpp_server: str) -> None:
    question = "Which city is the capital of Germany? Reply in JSON with the city and your confidence 1-5."
    with _engine(llama_cpp_server) as engine:
        results = engine.generate([_ask(question, max_new_tokens=64, json_schema=SCHEMA) for _ in range(2)])
    for result in results:
        assert result.finish_reason == "stop", result
        jsonschema.validate(json.loads(result.text), SCHEMA)


def test_json_schema_style_is_refused_by_llama_cpp(llama_cpp_server: str) -> None:
    """FACTS: llama.cpp answers HTTP 500 to OpenAI's json_schema style; an error result, not transient."""
    with _engine(llama_cpp_server, response_format_style="json_schema", max_retries=0) as engine:
        result, plain = engine.generate([_ask("Capital of Italy?", json_schema=SCHEMA), _ask("Capital of Spain?")])
    assert result.finish_reason == "error" and result.error.startswith("HTTP 500")
    assert plain.finish_reason in ("stop", "length")


def test_concurrent_requests_and_throughput(llama_cpp_server: str, record_property: Callable[[str, object], None]) -> None:
    questions = [f"Name one fact about the number {n}." for n in range(8)]
    rates = {}
    for concurrency in (1, 4):
        with _engine(llama_cpp_server, concurrency=concurrency) as engine:
            started = time.monotonic()
            results = engine.generate([_ask(q, max_new_tokens=32) for q in questions])
            elapsed = time.monotonic() - started
        assert [r.error for r in results] == [None] * len(questions)
        assert all(r.finish_reason in ("stop", "length") and r.text.strip() for r in results)
        tokens = sum(r.completion_tokens for r in results)
        rates[concurrency] = (len(results) / elapsed, tokens / elapsed)
        record_property(f"llama_cpp_c{concurrency}_req_per_s", round(len(results) / elapsed, 2))
        record_property(f"llama_cpp_c{concurrency}_tok_per_s", round(tokens / elapsed, 1))
    print("\nllama.cpp server through OpenAIEngine, 8 requests x <=32 tokens: "
          + ", ".join(f"concurrency {c}: {r:.2f} req/s, {t:.0f} tok/s" for c, (r, t) in rates.items()))


def test_generate_qa_step_with_the_openai_engine(llama_cpp_server: str, demo_ingest: DemoIngest) -> None:
    """The whole generate_qa step on 2 demo chunks, every request through OpenAIEngine to llama.cpp."""
    engine = EngineSettings(kind="openai", openai=OpenAISettings(
        base_url=llama_cpp_server, model="base", concurrency=2, timeout_s=120, max_retries=1, backoff_s=0.1,
        response_format_style="json_object"))
    settings = GenerateQASettings(engine=engine, max_chunks=2, pairs_per_chunk=1, unanswerable_per_chunk=1,
                                  max_new_tokens=112, question_max_chars=120, answer_max_chars=160)
    context = demo_ingest.context.model_copy(update={"run_id": "llamacpp"})  # its own outputs
    out = run(GenerateQAInputs(context=context, settings=settings, chunks_uri=demo_ingest.outputs.chunks_uri))

    directory = context.store().materialize(out.qa_uri, context.scratch() / "qa-llamacpp")
    stats = json.loads((directory / "stats.json").read_text())
    rejected = [json.loads(line) for line in (directory / "qa_rejected.jsonl").read_text().splitlines()]
    accepted = [json.loads(line) for split in ("train", "val", "test")
                for line in (directory / f"qa_{split}.jsonl").read_text().splitlines()]
    assert stats["chunks"] == 2 and stats["requests"] == 4 == len(accepted) + len(rejected)
    assert stats["completion_tokens"] > 0 and out.n_rejected == len(rejected)
    # The server answered every request with JSON its schema allows: no reply failed to arrive or parse.
    failed = {"generation_error", "truncated", "invalid_json", "schema_invalid"}
    assert not failed & {row["reason"] for row in rejected}, rejected
    assert accepted and all(pair["chunk_id"] in stats["shortfall"]["per_chunk"] for pair in accepted)
