"""The judge step end to end on the embedded model (tiny budget): real engine, real LoRA adapter, real
SQLite MLflow registry, real artifact store."""

import csv
import json
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.eval_report import GateSettings
from steps.common.grading import REFUSALS
from steps.common.registry import CHAMPION, Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import ArtifactStore, StorageSettings
from steps.common.tags import ADAPTER_URI_TAG
from steps.judge import JudgeInputs, JudgeOutputs, run
from steps.judge.settings import JudgeSettings

pytestmark = pytest.mark.slow

CONTEXT = ("The employee handbook says the notice period is four weeks to the end of a month. "
           "Holidays must be requested two weeks in advance through the HR portal.")
QUESTIONS = [
    ("How long is the notice period?", "Four weeks to the end of a month.", True),
    ("How far in advance must holidays be requested?", "Two weeks in advance.", True),
    ("Where are holidays requested?", "Through the HR portal.", True),
    ("What is the CEO's salary?", REFUSALS["en"], False),
]


@pytest.fixture(scope="module")
def published(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The test set and a random (init_lora_weights=False) LoRA adapter, published as the steps would."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("judge-inputs")
    store = ArtifactStore(StorageSettings(artifact_root=root.as_uri()), ResidencyPolicy())
    qa = root / "qa"
    qa.mkdir()
    rows = [{"question": q, "answer": a, "type": "factual", "language": "en", "chunk_id": "c0",
             "doc_id": "d0", "answerable": ok, "context": CONTEXT} for q, a, ok in QUESTIONS]
    (qa / "qa_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    qa_uri = (root / "published" / "qa").as_uri()
    store.publish_dir(qa, qa_uri)

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, local_files_only=True)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    adapter = root / "adapter"
    get_peft_model(model, lora).save_pretrained(adapter)
    AutoTokenizer.from_pretrained(embedded_model_dir, local_files_only=True).save_pretrained(adapter)
    adapter_uri = (root / "published" / "adapter").as_uri()
    store.publish_dir(adapter, adapter_uri)
    return {"qa_uri": qa_uri, "adapter_uri": adapter_uri}


def judge(tmp_path: Path, tracking_uri: str, published: dict[str, str]
          ) -> tuple[JudgeOutputs, RuntimeContext]:
    context = RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))
    settings = JudgeSettings(max_new_tokens=12, judge_max_new_tokens=80, pairwise=True,
                             gate=GateSettings(min_items=1, min_stop_rate=0.0, min_refusal_rate=0.0,
                                               max_false_refusal_rate=1.0, bootstrap_samples=200))
    inputs = JudgeInputs(context=context, settings=settings, base_model="embedded",
                         registry=RegistrySettings(tracking_uri=tracking_uri), **published)
    return run(inputs), context


def read(context: RuntimeContext, uri: str) -> Path:
    return context.store().materialize(uri, context.scratch() / "read")


def test_against_the_base_model_when_there_is_no_champion(
        tmp_path: Path, published: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARGO_PROGRESS_FILE", str(tmp_path / "progress"))
    outputs, context = judge(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", published)

    assert outputs.champion_version == ""
    assert outputs.report_uri == context.output_uri("judge", "report")
    report = read(context, outputs.report_uri)
    metrics = json.loads((report / "eval_metrics.json").read_text())
    assert metrics["champion_version"] is None
    assert metrics["n_items"] == 4
    assert metrics["gate"]["passed"] is outputs.gate_passed
    assert metrics["gate"]["reason"] == outputs.gate_reason and outputs.gate_reason.startswith("Gate ")
    assert metrics["candidate"]["a_rate"]["value"] == outputs.candidate_a_rate
    assert metrics["candidate"]["stop_rate"]["value"] == outputs.candidate_stop_rate
    assert metrics["candidate"]["refusal_rate"]["n"] == 1
    assert sum(metrics["pairwise"][k] for k in ("wins", "losses", "ties")) == 4

    rows = [json.loads(line) for line in (report / "items.jsonl").read_text().splitlines()]
    assert [r["question"] for r in rows] == [q for q, _, _ in QUESTIONS]
    assert all(r["candidate"]["finish_reason"] != "error" and r["champion"]["finish_reason"] != "error"
               for r in rows)
    # The random adapter was applied to the candidate only: its answers differ from the base model's.
    assert any(r["candidate"]["text"] != r["champion"]["text"] for r in rows)
    for role in ("candidate", "champion"):
        usable = [r[role]["verdict"] for r in rows if r[role]["verdict"]["grade"] is not None]
        assert len(usable) == 4 - metrics["unusable_verdicts"][role]
    with (report / "items.csv").open(encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [t["question"] for t in table] == [q for q, _, _ in QUESTIONS]
    assert [t["candidate_grade"] for t in table] == [r["candidate"]["grade"] for r in rows]
    html = (report / "report.html").read_text()
    assert 'data-testid="bar-a_rate-candidate"' in html and "base model" in html
    assert html.count('data-testid="item-row"') == 4
    # Reference scores for every answer, their means and paired differences, and the judge's reliability.
    for role in ("candidate", "champion"):
        assert all(0.0 <= r[role]["scores"]["chrf"] <= 1.0 for r in rows)
        assert metrics[role]["reference"]["chrf"]["n"] == 4
    assert metrics["gate"]["reference_differences"]["token_f1"]["n"] == 4
    reliability = metrics["judge_reliability"]
    assert reliability["with_reference"]["n"] == 8 - sum(metrics["unusable_verdicts"].values())
    assert reliability["swap_consistency"]["n"] == 4  # pairwise on: every pair judged in both orders
    assert all(len(r["preference_orders"]) == 2 for r in rows)
    assert 'data-testid="reference-scores"' in html and 'data-testid="judge-reliability"' in html
    assert (tmp_path / "progress").read_text() == "24/24"  # 4 items x (2 answers + 2 verdicts + 2 orders)


def test_a_champion_with_the_same_adapter_answers_identically(
        tmp_path: Path, published: dict[str, str], mlflow_sqlite_uri: str) -> None:
    registry = Registry(RegistrySettings(tracking_uri=mlflow_sqlite_uri), ResidencyPolicy())
    uri = published["adapter_uri"]
    version = registry.create_version(uri, None, {ADAPTER_URI_TAG: uri})
    registry.set_alias(CHAMPION, version.version)

    outputs, context = judge(tmp_path, mlflow_sqlite_uri, published)

    assert outputs.champion_version == version.version
    report = read(context, outputs.report_uri)
    rows = [json.loads(line) for line in (report / "items.jsonl").read_text().splitlines()]
    # Same adapter, identical greedy decoding: the same answers and, from the same judge, the same grades.
    assert [r["candidate"]["text"] for r in rows] == [r["champion"]["text"] for r in rows]
    assert [r["candidate"]["verdict"] for r in rows] == [r["champion"]["verdict"] for r in rows]
    metrics = json.loads((report / "eval_metrics.json").read_text())
    if metrics["unusable_verdicts"]["candidate"] == 0:  # fail-closed grading is asymmetric otherwise
        difference = metrics["gate"]["a_rate_difference"]
        assert (difference["low"], difference["high"]) == (0.0, 0.0)
        assert outputs.gate_passed, outputs.gate_reason
    assert f"champion v{version.version}" in (report / "report.html").read_text()
