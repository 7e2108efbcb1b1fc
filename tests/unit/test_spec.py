"""The declared pipeline matches the steps' real Input/Output models and the config."""

from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.spec import FromConfig, FromStep, Node, Pipeline, When, build_pipeline

PIPELINE = build_pipeline()


@pytest.mark.parametrize("node", PIPELINE.nodes, ids=lambda n: n.name)
def test_every_input_field_is_bound_and_nothing_else(node: Node) -> None:
    fields = set(node.inputs_model().model_fields)
    assert set(node.bindings) == fields


@pytest.mark.parametrize("node", PIPELINE.nodes, ids=lambda n: n.name)
def test_step_outputs_and_config_paths_exist(node: Node, tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path)
    for field, binding in node.bindings.items():
        if isinstance(binding, FromStep):
            upstream = PIPELINE.node(binding.step).outputs_model()
            assert binding.output in upstream.model_fields, f"{node.name}.{field}"
        elif isinstance(binding, FromConfig):
            config.get(binding.path)  # raises AttributeError on a wrong path
    if node.when:
        assert node.when.output in PIPELINE.node(node.when.step).outputs_model().model_fields


def test_order_is_topological_and_until_keeps_ancestors() -> None:
    names = [n.name for n in PIPELINE.ordered()]
    assert names.index("ingest") < names.index("generate_qa") < names.index("finetune") < names.index("promote")
    assert [n.name for n in PIPELINE.until("generate_qa")] == ["ingest", "generate_qa"]


def test_cycles_and_unknown_steps_are_refused() -> None:
    a = Node("a", "steps.ingest", "cpu", {"x": FromStep("b", "y")})
    b = Node("b", "steps.ingest", "cpu", {"y": FromStep("a", "x")})
    with pytest.raises(ValueError, match="cycle"):
        Pipeline((a, b)).ordered()
    orphan = Node("c", "steps.ingest", "cpu", {}, when=When("missing", "x", "true"))
    with pytest.raises(ValueError, match="unknown step"):
        Pipeline((orphan,)).ordered()


def test_lineage_binds_to_what_the_steps_actually_used() -> None:
    """The registered adapter's lineage comes from the steps' outputs, not from the config: on a cluster the
    judge is a served model whose name is not `judge.judge_engine.model`."""
    promote = PIPELINE.node("promote").bindings
    assert promote["judge_model"] == FromStep("judge", "judge_model")
    assert promote["qa_model"] == FromStep("generate_qa", "qa_model")
    assert promote["corpus_digest"] == FromStep("ingest", "corpus_digest")
    assert promote["base_model_digest"] == FromStep("check_dataset", "base_model_digest")


@pytest.mark.parametrize("kind, expected", [("transformers", "embedded"), ("openai", "judge")])
def test_engine_model_names_the_served_model_for_a_server(kind: str, expected: str) -> None:
    from steps.common.engines.base import EngineSettings, OpenAISettings
    from steps.common.models import engine_model

    assert engine_model(EngineSettings(kind=kind, openai=OpenAISettings(model="judge"))) == expected
