"""The transformers engine on the real embedded model: batching, constrained JSON, adapters, bad requests."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from steps.common.engines.base import EngineSettings, GenerationRequest, GenerationResult
from steps.common.engines.transformers_engine import TransformersEngine

pytestmark = pytest.mark.slow

# Different lengths on purpose: batching them needs left padding to be right.
PROMPTS = [
    "What is the capital of France?",
    "Name one colour of the rainbow and explain in one sentence why the sky looks blue on a clear day.",
    "Say hello.",
]
CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}}, "required": ["city"],
        "additionalProperties": False}
COUNT = {"type": "object", "properties": {"count": {"type": "integer", "minimum": 0, "maximum": 99},
                                          "unit": {"type": "string", "enum": ["days", "weeks"]}},
         "required": ["count", "unit"], "additionalProperties": False}


def ask(prompt: str, max_new_tokens: int = 12, **kwargs) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": prompt}], max_new_tokens=max_new_tokens, **kwargs)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread while the module runs. On a CPU shared with other processes, two OpenMP threads
    wait for each other at every barrier and batched generation slows down ~10x (bench/generation_cpu.py
    --threads 1 vs 2); the setting is process-wide, so it is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine(embedded_model_dir: Path, one_torch_thread: None) -> Iterator[TransformersEngine]:
    engine = TransformersEngine(EngineSettings(batch_size=4), embedded_model_dir)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def alone(engine: TransformersEngine) -> list[GenerationResult]:
    """Each prompt generated on its own (no padding): the reference for every batched run."""
    return [engine.generate([ask(prompt)])[0] for prompt in PROMPTS]


def test_batched_greedy_output_equals_one_at_a_time(engine: TransformersEngine,
                                                    alone: list[GenerationResult]) -> None:
    batched = engine.generate([ask(prompt) for prompt in PROMPTS])
    assert [r.text for r in batched] == [r.text for r in alone]
    assert all(r.text.strip() for r in batched)
    for result in batched:
        assert result.finish_reason in ("stop", "length")
        assert 1 <= result.completion_tokens <= 12
        assert (result.finish_reason == "length") == (result.completion_tokens == 12)


def test_the_first_token_time_is_recorded_per_batch(engine: TransformersEngine) -> None:
    started = time.perf_counter()
    results = engine.generate([ask(prompt) for prompt in PROMPTS[:2]])
    finished = time.perf_counter()
    first = {r.first_token_at for r in results}
    assert len(first) == 1  # one batch: the same prefill gave every row its first token
    [at] = first
    assert at is not None and started < at < finished


def test_mixed_batch_of_schemas_and_free_text(engine: TransformersEngine, alone: list[GenerationResult]) -> None:
    requests = [
        ask("Which city is the capital of Italy? Answer in JSON.", 24, json_schema=CITY),
        ask(PROMPTS[0]),
        ask("How long is the notice period: four weeks. Answer in JSON.", 24, json_schema=COUNT),
        ask(PROMPTS[2]),
        ask("Which city is the capital of Spain? Answer in JSON.", 24, json_schema=CITY),
    ]
    results = engine.generate(requests)
    assert [results[1].text, results[3].text] == [alone[0].text, alone[2].text]  # free text unaffected
    for request, result in zip(requests, results):
        if request.json_schema is None:
            continue
        assert result.finish_reason == "stop", result
        jsonschema.validate(json.loads(result.text), request.json_schema)


def test_bad_requests_become_error_results_and_spare_the_rest(engine: TransformersEngine, tmp_path: Path,
                                                               alone: list[GenerationResult]) -> None:
    too_long = ask("word " * (engine.context_length + 10))
    no_adapter = ask(PROMPTS[0], adapter=str(tmp_path / "missing-adapter"))
    results = engine.generate([too_long, ask(PROMPTS[0]), no_adapter])
    assert results[0].finish_reason == "error" and "exceeds the model context" in results[0].error
    assert results[2].finish_reason == "error" and "adapter" in results[2].error
    assert results[1].text == alone[0].text


def test_adapter_requests_differ_from_base_in_the_same_call(engine: TransformersEngine, random_adapter: Path,
                                                            alone: list[GenerationResult]) -> None:
    requests = [ask(PROMPTS[0], adapter=str(random_adapter)), ask(PROMPTS[0]),
                ask(PROMPTS[2], adapter=str(random_adapter)), ask(PROMPTS[2])]
    results = engine.generate(requests)
    assert all(r.finish_reason != "error" for r in results), results
    # Base requests still get the bare base model once an adapter is loaded ...
    assert [results[1].text, results[3].text] == [alone[0].text, alone[2].text]
    # ... and adapter requests get the adapter.
    assert results[0].text != alone[0].text and results[2].text != alone[2].text
    again = engine.generate([requests[0]])[0]
    assert again.text == results[0].text  # the adapter is loaded once and reused
