"""The `vllm` engine on the real embedded model (vLLM's CPU build): constrained JSON, adapters through LoRA and
merged, bad requests, and no engine process left behind. An engine start costs ~30-120 s here, so the module
starts two engines in all: one in lora mode shared by most tests, one in merged mode."""

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import psutil
import pytest

from steps.common.engines.base import EngineSettings, GenerationRequest, GenerationResult
from steps.common.engines.vllm_engine import VLLMEngine

pytestmark = pytest.mark.slow

PROMPTS = ["What is the capital of France?", "Say hello.", "Name a primary colour."]
CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}}, "required": ["city"],
        "additionalProperties": False}
COUNT = {"type": "object", "properties": {"count": {"type": "integer", "minimum": 0, "maximum": 99},
                                          "unit": {"type": "string", "enum": ["days", "weeks"]}},
         "required": ["count", "unit"], "additionalProperties": False}
MAX_MODEL_LEN = 512  # small: a too-long prompt is cheap to build


def ask(prompt: str, max_new_tokens: int = 12, **kwargs) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": prompt}], max_new_tokens=max_new_tokens, **kwargs)


def settings(adapter_mode: str) -> EngineSettings:
    # float32 (vLLM's CPU default is bfloat16): merged and LoRA weights then differ by float32 rounding only,
    # which the random adapter's large update would otherwise amplify into different greedy tokens.
    return EngineSettings.model_validate({"kind": "vllm", "batch_size": 4, "vllm": {
        "adapter_mode": adapter_mode, "max_model_len": MAX_MODEL_LEN, "max_lora_rank": 8, "dtype": "float32"}})


def engine_processes() -> list[psutil.Process]:
    """This process's descendants, zombies included, other than multiprocessing's resource tracker (one per
    process, shared by everything that spawns; not an engine)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One thread for the engine (it takes the caller's torch thread count): on a shared 2-core machine two
    OpenMP threads wait on each other at every barrier."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lora_engine(embedded_model_dir: Path, one_torch_thread: None,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMEngine]:
    engine = VLLMEngine(settings("lora"), embedded_model_dir, tmp_path_factory.mktemp("vllm-scratch"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def lora_answers(lora_engine: VLLMEngine, random_adapter: Path) -> list[GenerationResult]:
    """Base answers to PROMPTS, then the adapter's, in one call."""
    return lora_engine.generate([ask(p) for p in PROMPTS] + [ask(p, adapter=str(random_adapter)) for p in PROMPTS])


def test_constrained_json_parses_against_its_schema_beside_free_text(lora_engine: VLLMEngine,
                                                                      lora_answers: list[GenerationResult]) -> None:
    requests = [ask("Which city is the capital of Italy? Answer in JSON.", 24, json_schema=CITY),
                ask(PROMPTS[0]),
                ask("How long is the notice period: four weeks. Answer in JSON.", 24, json_schema=COUNT)]
    results = lora_engine.generate(requests)
    assert results[1].text == lora_answers[0].text  # greedy free text is unaffected by its neighbours
    for request, result in zip(requests, results):
        if request.json_schema is not None:
            assert result.finish_reason == "stop", result
            jsonschema.validate(json.loads(result.text), request.json_schema)
            # Compact JSON: no free whitespace for a small model to spend its token budget on.
            assert "\n" not in result.text and "  " not in result.text, result.text


def test_an_adapter_changes_answers_and_the_base_stays_the_base(lora_engine: VLLMEngine,
                                                                lora_answers: list[GenerationResult]) -> None:
    base, adapted = lora_answers[:len(PROMPTS)], lora_answers[len(PROMPTS):]
    assert all(r.finish_reason in ("stop", "length") and 1 <= r.completion_tokens <= 12 for r in lora_answers)
    assert all(r.text.strip() for r in lora_answers)
    assert all(b.text != a.text for b, a in zip(base, adapted))
    # Base requests beside adapter requests get the bare base model, as in a call without adapters.
    alone = lora_engine.generate([ask(p) for p in PROMPTS])
    assert [r.text for r in alone] == [r.text for r in base]


def test_bad_requests_become_error_results_and_spare_the_rest(lora_engine: VLLMEngine, tmp_path: Path,
                                                               lora_answers: list[GenerationResult]) -> None:
    too_long = ask("word " * MAX_MODEL_LEN)
    over_budget = ask(PROMPTS[0], max_new_tokens=MAX_MODEL_LEN)  # the prompt fits, prompt + budget does not
    high_rank = tmp_path / "rank-64"
    high_rank.mkdir()
    (high_rank / "adapter_config.json").write_text(json.dumps({"r": 64, "peft_type": "LORA"}))
    requests = [too_long, ask(PROMPTS[0]), over_budget, ask(PROMPTS[1], adapter=str(tmp_path / "missing")),
                ask(PROMPTS[1], adapter=str(high_rank))]
    results = lora_engine.generate(requests)
    assert results[1].text == lora_answers[0].text
    for index in (0, 2):
        assert results[index].finish_reason == "error" and "exceeds the engine's max_model_len" in results[index].error
    assert results[3].finish_reason == "error" and "not a local LoRA adapter folder" in results[3].error
    assert results[4].finish_reason == "error" and "rank 64, above vllm.max_lora_rank 8" in results[4].error


def test_a_request_vllm_itself_refuses_fails_alone(lora_engine: VLLMEngine,
                                                   lora_answers: list[GenerationResult]) -> None:
    """A schema vLLM's grammar backend cannot compile is refused by vLLM at submission: the batch is retried
    one by one and only that request errors."""
    broken = ask(PROMPTS[0], json_schema={"type": "object", "properties": {"a": {"type": "no-such-type"}}})
    results = lora_engine.generate([ask(PROMPTS[0]), broken, ask(PROMPTS[1])])
    assert results[1].finish_reason == "error" and results[1].error
    assert [results[0].text, results[2].text] == [lora_answers[0].text, lora_answers[1].text]


def test_merged_adapter_answers_as_lora_does_and_close_leaves_no_engine_process(
        embedded_model_dir: Path, random_adapter: Path, lora_answers: list[GenerationResult], one_torch_thread: None,
        tmp_path: Path) -> None:
    before = {p.pid for p in engine_processes()}
    engine = VLLMEngine(settings("merged"), embedded_model_dir, tmp_path)
    try:
        assert {p.pid for p in engine_processes()} == before  # merged mode starts an engine when needed
        merged = engine.generate([ask(p, adapter=str(random_adapter)) for p in PROMPTS])
        assert {p.pid for p in engine_processes()} - before, "the merged checkpoint runs in an engine process"
        assert len(list(tmp_path.glob("merged-adapters-*/*/config.json"))) == 1
    finally:
        engine.close()
    assert {p.pid for p in engine_processes()} <= before, "no engine process (nor zombie) outlives close()"
    assert list(tmp_path.glob("merged-adapters-*")) == [], "the merged checkpoints are deleted on close()"
    # Greedy answers of the merged checkpoint and of LoRA differ at most by float rounding: most are equal.
    adapted = lora_answers[len(PROMPTS):]
    same = sum(m.text == a.text for m, a in zip(merged, adapted))
    assert same >= len(PROMPTS) - 1, (merged, adapted)
