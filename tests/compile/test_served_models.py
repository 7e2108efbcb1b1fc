"""Served names agree: a config that asks a shipped vLLM Service for a model name it does not serve is
refused at compile time, naming the key and the value; and a step whose LLM engines all call a server
runs without a GPU (its compiled pod follows the configured engines)."""

import pytest

from pipelines.argo.checks import CompileError
from pipelines.argo.compiler import compile_pipeline
from pipelines.argo.served_models import SHIPPED_SERVICES, llm_requests, served_name_problems
from pipelines.spec import build_pipeline
from tests.compile.conftest import fake_pipeline

STUDENT = "http://vllm.inference.svc.cluster.local:8000/v1"
TEACHER = "http://vllm-teacher.inference.svc.cluster.local:8000/v1"


def _templates(compiled) -> dict:
    return {t["name"]: t for t in compiled.template["spec"]["templates"]}


def test_the_example_config_asks_every_service_for_a_name_it_serves(example_config):
    assert served_name_problems(example_config) == []
    asked = {(key, url, model) for key, url, model in llm_requests(example_config)}
    assert asked == {
        ("generate_qa.engine.openai.model", TEACHER, "qa-writer"),
        ("judge.judge_engine.openai.model", TEACHER, "judge"),
        ("canary.base_model_name", "http://vllm-replicas.inference.svc.cluster.local:8000", "base"),
    }
    # The judge's in-process engine (vLLM's offline engine in its pod) keeps its (unused) openai defaults:
    # not a request anyone sends.
    assert example_config.judge.engine.kind == "vllm"


@pytest.mark.parametrize(("path", "url", "model", "key", "hint"), [
    ("generate_qa.engine", STUDENT, "qa-writer", "generate_qa.engine.openai.model='qa-writer'",
     "Service vllm-teacher serves 'qa-writer'"),
    ("judge.judge_engine", TEACHER, "base", "judge.judge_engine.openai.model='base'",
     "Service vllm serves 'base'"),
    ("judge.judge_engine", TEACHER, "gpt-judge", "judge.judge_engine.openai.model='gpt-judge'",
     "no shipped Service serves 'gpt-judge'"),
])
def test_a_name_the_service_does_not_serve_is_refused(example_config, path, url, model, key, hint):
    config = example_config.model_copy(deep=True)
    server = config.get(path).openai
    server.base_url, server.model = url, model
    with pytest.raises(CompileError) as exc:
        compile_pipeline(config, fake_pipeline())
    (problem,) = exc.value.problems
    assert problem.startswith(key) and hint in problem and url in problem


def test_the_canary_base_model_must_be_served_by_its_replicas(example_config):
    config = example_config.model_copy(deep=True)
    config.canary.base_model_name = "SmolLM2-1.7B-Instruct"
    (problem,) = served_name_problems(config)
    assert problem.startswith("canary.base_model_name='SmolLM2-1.7B-Instruct'")
    assert "Service vllm-replicas" in problem and "['base']" in problem


def test_servers_outside_the_shipped_manifests_are_not_judged_here(example_config):
    config = example_config.model_copy(deep=True)
    config.judge.judge_engine.openai.base_url = "http://judge.llm.svc.cluster.local:8000/v1"
    config.judge.judge_engine.openai.model = "anything"
    assert served_name_problems(config) == []


def test_every_shipped_service_serves_a_name():
    assert len({s.service for s in SHIPPED_SERVICES}) == len(SHIPPED_SERVICES)
    assert all(s.names and len(set(s.names)) == len(s.names) for s in SHIPPED_SERVICES)


def _gpu_requested(template: dict) -> bool:
    resources = template["script"]["resources"]
    return "nvidia.com/gpu" in {**resources.get("requests", {}), **resources.get("limits", {})}


def test_a_step_with_only_remote_engines_runs_on_cpu_without_a_gpu(example_config, real_compiled):
    # cluster-example: generate_qa calls the teacher; the judge answers in-process (transformers) and
    # grades through the teacher, so it keeps its GPU.
    templates = _templates(real_compiled)
    qa, judge = templates["generate-qa"], templates["judge"]
    assert not _gpu_requested(qa) and "tolerations" not in qa
    assert qa["script"]["image"] == example_config.argo.images.ref("cpu")
    assert qa["metadata"]["annotations"]["eurolora.io/image-family"] == "cpu"
    assert _gpu_requested(judge) and judge["script"]["image"] == example_config.argo.images.ref("infer-gpu")


@pytest.mark.parametrize(("qa_kind", "judge_kinds", "qa_gpu", "judge_gpu"), [
    ("transformers", ("transformers", "transformers"), True, True),
    ("openai", ("openai", "openai"), False, False),
    ("openai", ("openai", "transformers"), False, True),
])
def test_gpu_follows_the_configured_engines(example_config, qa_kind, judge_kinds, qa_gpu, judge_gpu):
    config = example_config.model_copy(deep=True)
    config.generate_qa.engine.kind = qa_kind
    config.judge.engine.kind, config.judge.judge_engine.kind = judge_kinds
    if config.judge.engine.kind == "openai":
        config.judge.engine.openai.base_url, config.judge.engine.openai.model = STUDENT, "base"
    placed = build_pipeline().placed(config)
    assert (placed.node("generate_qa").gpu, placed.node("judge").gpu) == (qa_gpu, judge_gpu)
    templates = _templates(compile_pipeline(config, build_pipeline()))
    assert _gpu_requested(templates["generate-qa"]) == qa_gpu
    assert _gpu_requested(templates["judge"]) == judge_gpu
    assert placed.node("finetune").gpu and _gpu_requested(templates["finetune"])  # training has no remote engine
