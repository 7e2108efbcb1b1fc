"""A known-bad control for the evaluation: an adapter trained on the demo's QA pairs with the answers shuffled
across questions (same questions, wrong answers, same training budget) must be rejected by the gate, and
the report must say which criterion rejected it; the adapter trained on the true pairs must pass the same gate.

Both are judged against the base model, on the embedded model, with the shipped local config's judge and gate
settings, on the questions they were trained on with their true answers: a wrong answer can only be learnt
where training taught one. (The held-out set of this test's smaller demo budget, tests/fixtures/demo_steps.py,
holds ~5 items of other documents, mostly unanswerable: too few for any gate to tell anything.)"""

import json
import random
from pathlib import Path

import pytest

from pipelines.config import PipelineConfig
from steps.common.contract import RuntimeContext
from steps.common.eval_report import METRICS_FILE, EvalMetrics
from steps.common.qa_dataset import TEST_FILE, split_file
from steps.common.registry_settings import RegistrySettings
from steps.finetune import FinetuneInputs
from steps.finetune import run as finetune
from steps.judge import REPORT_FILE, JudgeInputs
from steps.judge import run as judge
from tests.fixtures.demo_steps import DemoQA

pytestmark = pytest.mark.slow
TRAINING_STEPS = 20  # the same budget for both adapters; the demo trains 25


def shuffled_answers(rows: list[dict], seed: int = 0) -> list[dict]:
    """The rows with every answer moved to another question: a cyclic shift along a seeded random order
    leaves no row with its own answer (rows sharing a refusal sentence may still swap equal answers)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    moved = [dict(row) for row in rows]
    for position, index in enumerate(order):
        moved[index]["answer"] = rows[order[(position + 1) % len(order)]]["answer"]
    return moved


def _rows(directory: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (directory / split_file(split)).read_text().splitlines() if line]


def _publish(context: RuntimeContext, root: Path, name: str, files: dict[str, list[dict]]) -> str:
    target = root / name
    target.mkdir()
    for file, rows in files.items():
        (target / file).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    uri = context.output_uri("generate_qa", name)
    context.store().publish_dir(target, uri)
    return uri


def run_control(config: PipelineConfig, context: RuntimeContext, qa_dir: Path, qa_uri: str, root: Path
                ) -> dict[str, tuple[EvalMetrics, str]]:
    """(eval metrics, report HTML) per adapter, "trained" and "shuffled", each judged against the base model
    on the true training pairs."""
    train, val = _rows(qa_dir, "train"), _rows(qa_dir, "val")
    qa_uris = {"trained": qa_uri,
               "shuffled": _publish(context, root, "qa-shuffled", {split_file("train"): shuffled_answers(train),
                                                                   split_file("val"): shuffled_answers(val)})}
    judged_uri = _publish(context, root, "qa-judged", {TEST_FILE: train})
    training = config.finetune.model_copy(update={"max_steps": TRAINING_STEPS})
    gate = config.judge.gate.model_copy(update={"min_items": min(config.judge.gate.min_items, len(train))})
    settings = config.judge.model_copy(update={"gate": gate})
    results = {}
    for name, uri in qa_uris.items():
        # A registry per adapter: no champion, so each is compared with the base model.
        registry = RegistrySettings(tracking_uri=f"sqlite:///{root}/{name}-mlflow.db")
        run = context.model_copy(update={"run_id": f"control-{name}"})  # each publishes its own artifacts
        adapter = finetune(FinetuneInputs(context=run, settings=training, base_model="embedded", qa_uri=uri,
                                          registry=registry))
        outputs = judge(JudgeInputs(context=run, settings=settings, registry=registry, base_model="embedded",
                                    qa_uri=judged_uri, adapter_uri=adapter.adapter_uri))
        report = run.store().materialize(outputs.report_uri, root / f"{name}-report")
        metrics = EvalMetrics.model_validate_json((report / METRICS_FILE).read_text())
        print(f"{name}: {metrics.gate.reason}\n  reliability: {metrics.judge_reliability}")
        results[name] = (metrics, (report / REPORT_FILE).read_text())
    return results


@pytest.fixture(scope="module")
def judged(demo_qa: DemoQA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[EvalMetrics, str]]:
    import torch

    # One torch thread, as tests/fixtures/demo_steps.py: two OpenMP threads on a busy 2-core CPU wait on each
    # other at every barrier (a training step took minutes instead of seconds).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_control(demo_qa.ingest.config, demo_qa.ingest.context, demo_qa.directory,
                           demo_qa.outputs.qa_uri, tmp_path_factory.mktemp("gate-control"))
    finally:
        torch.set_num_threads(before)


def test_the_shuffled_answer_adapter_is_rejected_and_the_report_names_the_criterion(judged) -> None:
    metrics, html = judged["shuffled"]
    assert not metrics.gate.passed, metrics.gate.reason
    assert metrics.gate.failed_criteria, metrics.gate.reason
    assert "min_items" not in metrics.gate.failed_criteria  # rejected on quality, not for lack of evidence
    for criterion in metrics.gate.failed_criteria:
        assert f"<code>{criterion}</code>" in html
    assert 'data-testid="failed-criteria"' in html and 'data-testid="reference-scores"' in html


def test_the_adapter_trained_on_the_true_answers_passes_the_same_gate(judged) -> None:
    metrics, html = judged["trained"]
    assert metrics.gate.passed, metrics.gate.reason
    assert metrics.gate.failed_criteria == []
    assert 'data-testid="failed-criteria"' not in html
    # The reference scores separate the two adapters on the same held-out references.
    shuffled, _ = judged["shuffled"]
    assert metrics.candidate.reference["chrf"].value > shuffled.candidate.reference["chrf"].value
