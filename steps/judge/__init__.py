"""judge: compare the candidate adapter with the champion on the held-out test set and gate promotion.

Both answer every test question under identical greedy decoding (candidate = base + new adapter,
champion = base + the registry champion's adapter, or the bare base model when there is none). Each
answer gets deterministic checks (checks.py), reference scores against the reference answer and chunk
(steps/common/reference_scores.py) and a rubric verdict from a self-hosted judge model (verdicts.py, fail
closed; the rubric's refusal rule is decided by the refusal check, `Verdict.graded`), whose reliability is
measured on the same answers (reliability.py); the gate (gate.py) decides on paired bootstrap intervals. Published:
`eval_metrics.json`, the per-item records `items.jsonl` (everything) and `items.csv` (the flat table,
item_table.py), and the self-contained `report.html`.
"""

# NOTE: no `from __future__ import annotations` here: Hera's runner inspects these annotations.
import logging
import time
from pathlib import Path

from hera.workflows.io import Input, Output
from pydantic import Field

from steps.common.argo_ui import copy_for_argo_ui
from steps.common.contract import RuntimeContext, transient_exit
from steps.common.registry_settings import RegistrySettings
from steps.judge.settings import JudgeSettings

log = logging.getLogger(__name__)

ITEMS_FILE = "items.jsonl"
ITEMS_TABLE_FILE = "items.csv"
REPORT_FILE = "report.html"


class JudgeInputs(Input):
    context: RuntimeContext
    settings: JudgeSettings = Field(default_factory=JudgeSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    base_model: str = "embedded"  # the base both adapters were trained on
    qa_uri: str  # generate_qa's published directory holding qa_test.jsonl
    adapter_uri: str  # finetune's published candidate adapter directory


class JudgeOutputs(Output):
    report_uri: str = ""  # directory with eval_metrics.json, items.jsonl, items.csv, report.html
    gate_passed: bool = False
    gate_reason: str = ""
    champion_version: str = ""  # the champion compared against ("" = none: the base model)
    judge_model: str = ""  # the model that graded the answers (lineage of the registered adapter)
    candidate_a_rate: float = 0.0
    candidate_c_rate: float = 0.0
    candidate_stop_rate: float = 0.0
    candidate_refusal_rate: float = 0.0  # 0.0 also when the test set has no unanswerable question


def _champion(inputs: JudgeInputs) -> tuple[str | None, str | None]:
    """(champion version, its local adapter folder), or (None, None) when no champion exists yet."""
    from steps.common.registry import CHAMPION, Registry
    from steps.common.tags import ADAPTER_URI_TAG

    info = Registry(inputs.registry, inputs.context.residency).alias_version(CHAMPION)
    if info is None:
        return None, None
    uri = info.tags.get(ADAPTER_URI_TAG)
    if not uri:
        raise ValueError(f"champion version {info.version} of {inputs.registry.model_name!r} has no "
                         f"{ADAPTER_URI_TAG} tag: re-register it with promote, or remove the champion alias")
    return info.version, str(inputs.context.store().materialize(uri, inputs.context.scratch() / "adapters"))


@transient_exit
def run(inputs: JudgeInputs) -> JudgeOutputs:
    from steps.common.engines import make_engine
    from steps.common.models import engine_model
    from steps.common.qa_dataset import TEST_FILE, load_pairs
    from steps.judge.evaluate import evaluate
    from steps.judge.publish import publish_results
    from steps.judge.records import measure

    started = time.perf_counter()
    context, settings = inputs.context, inputs.settings
    store = context.store()
    qa_dir = store.materialize(inputs.qa_uri, context.scratch() / "qa")
    items = load_pairs(qa_dir / TEST_FILE, settings.max_items, settings.gate.seed)
    candidate_dir = store.materialize(inputs.adapter_uri, context.scratch() / "adapters")
    champion_version, champion_dir = _champion(inputs)
    log.info("judging %d test items; champion: %s", len(items),
             f"version {champion_version}" if champion_version else "none (base model)")

    # One engine serves both candidate and champion (adapters per request), so decoding is identical.
    generation = settings.engine.model_copy(update={"model": inputs.base_model})
    generator = make_engine(generation, context)
    judge_settings = generation if settings.judge_engine == generation else settings.judge_engine
    judge = generator if judge_settings is generation else make_engine(judge_settings, context)
    try:
        records, timings = evaluate(items, generator, judge,
                                    {"candidate": str(candidate_dir), "champion": champion_dir}, settings)
    finally:
        if judge is not generator:
            judge.close()
        generator.close()

    metrics = measure(records, champion_version, settings.gate,
                      {**timings, "total": time.perf_counter() - started})
    report_uri = publish_results(context, metrics, records, settings.report_examples)
    copy_for_argo_ui(Path(store.materialize(report_uri, context.scratch() / "report")) / REPORT_FILE)
    decision = metrics.gate
    log.info("gate %s on %d items (unusable verdicts %s, generation errors %s) in %.1fs",
             "passed" if decision.passed else "failed", len(records), metrics.unusable_verdicts,
             metrics.generation_errors, time.perf_counter() - started)

    summary = metrics.candidate
    return JudgeOutputs(
        report_uri=report_uri,
        gate_passed=decision.passed,
        gate_reason=decision.reason,
        champion_version=champion_version or "",
        judge_model=engine_model(judge_settings),
        candidate_a_rate=summary.a_rate.value if summary.a_rate else 0.0,
        candidate_c_rate=summary.c_rate.value if summary.c_rate else 0.0,
        candidate_stop_rate=summary.stop_rate.value if summary.stop_rate else 0.0,
        candidate_refusal_rate=summary.refusal_rate.value if summary.refusal_rate else 0.0,
    )
