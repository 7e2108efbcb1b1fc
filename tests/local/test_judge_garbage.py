"""A judge model that always answers garbage: the judge step fails every verdict closed, the gate fails, and
promote rejects the candidate without touching the champion.

Real pieces, tiny budget: the judge step's `run()` with the embedded model answering as candidate and champion
(two random LoRA adapters), its judge an OpenAI-compatible server process (tests/support) whose every
completion is well-formed JSON of the wrong shape, so only the verdict schema stands between it and the gate;
a SQLite MLflow registry; the promote step's `run()` on the judge's published report. The judge's API key is a
planted secret: the server receives it, and no published file or log line carries it.
"""

import json
import logging
import uuid
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.engines.base import EngineSettings, OpenAISettings
from steps.common.eval_report import GateSettings
from steps.common.grading import REFUSALS
from steps.common.registry import CHAMPION, Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings, local_path
from steps.common.tags import ADAPTER_URI_TAG
from steps.judge import JudgeInputs
from steps.judge import run as judge
from steps.judge.settings import JudgeSettings
from steps.promote import run as promote
from tests.fixtures.leaks import PLANTED_SECRETS, files_under, leaked_secrets
from tests.fixtures.llm_servers import MisbehavingServer
from tests.fixtures.mlflow import db_aliases, make_finetune_run, promote_inputs

pytestmark = pytest.mark.slow

CONTEXT = "Holidays must be requested two weeks in advance through the HR portal."
QUESTIONS = [("How far in advance must holidays be requested?", "Two weeks in advance.", True),
             ("Where are holidays requested?", "Through the HR portal.", True),
             ("What is the CEO's salary?", REFUSALS["en"], False)]


def test_garbage_judge_fails_closed_and_promote_keeps_the_champion(
        tmp_path: Path, random_lora_adapters: tuple[Path, Path], misbehaving_openai_server: MisbehavingServer,
        mlflow_sqlite_uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("EUROLORA_LLM_API_KEY", PLANTED_SECRETS["EUROLORA_LLM_API_KEY"])
    caplog.set_level(logging.INFO)
    context = RuntimeContext(run_id="garbage", storage=StorageSettings(artifact_root=(tmp_path / "a").as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "scratch"))
    store = context.store()
    qa = tmp_path / "qa"
    qa.mkdir()
    (qa / "qa_test.jsonl").write_text("".join(json.dumps(
        {"question": q, "answer": a, "type": "factual", "language": "en", "chunk_id": "c0", "doc_id": "d0",
         "answerable": ok, "context": CONTEXT}) + "\n" for q, a, ok in QUESTIONS))
    qa_uri = context.output_uri("generate_qa", "qa")
    store.publish_dir(qa, qa_uri)
    candidate_uri, champion_uri = context.output_uri("finetune", "adapter"), context.output_uri("old", "adapter")
    store.publish_dir(random_lora_adapters[0], candidate_uri)
    store.publish_dir(random_lora_adapters[1], champion_uri)
    registry_settings = RegistrySettings(tracking_uri=mlflow_sqlite_uri, model_name=f"garbage-{uuid.uuid4().hex[:6]}")
    registry = Registry(registry_settings, context.residency)
    champion = registry.create_version(champion_uri, None, {ADAPTER_URI_TAG: champion_uri})
    registry.set_alias(CHAMPION, champion.version)
    db = Path(mlflow_sqlite_uri.removeprefix("sqlite:///"))
    before = db_aliases(db, registry_settings.model_name)

    model = f"json:garbage-{uuid.uuid4().hex[:6]}"  # well-formed JSON, never a verdict or a preference
    garbage = EngineSettings(kind="openai", openai=OpenAISettings(
        base_url=misbehaving_openai_server.base_url, model=model, max_retries=0, timeout_s=10))
    settings = JudgeSettings(judge_engine=garbage, max_new_tokens=8, pairwise=True,
                             gate=GateSettings(min_items=1, min_stop_rate=0, min_refusal_rate=0, bootstrap_samples=200))
    judged = judge(JudgeInputs(context=context, settings=settings, registry=registry_settings, qa_uri=qa_uri,
                               adapter_uri=candidate_uri))

    assert judged.champion_version == champion.version
    assert not judged.gate_passed, judged.gate_reason
    report = local_path(judged.report_uri)
    rows = [json.loads(line) for line in (report / "items.jsonl").read_text().splitlines()]
    assert len(rows) == len(QUESTIONS)
    for row in rows:
        for role, counted in (("candidate", "C"), ("champion", "A")):  # fail closed: against the candidate
            verdict = row[role]["verdict"]
            assert verdict["grade"] is None and "does not match the schema" in verdict["error"], verdict
            assert row[role]["grade"] == counted
        assert row["preference"] == "champion"
    metrics = json.loads((report / "eval_metrics.json").read_text())
    assert metrics["unusable_verdicts"] == {"candidate": len(QUESTIONS), "champion": len(QUESTIONS)}
    assert (judged.candidate_a_rate, judged.candidate_c_rate) == (0.0, 1.0)
    stats = misbehaving_openai_server.stats()
    assert stats["attempts"][model] == len(QUESTIONS) * 4  # 2 verdicts + 2 orders of preference per item
    assert stats["auth"][model] == f"Bearer {PLANTED_SECRETS['EUROLORA_LLM_API_KEY']}"  # the key was used

    run_id = make_finetune_run(mlflow_sqlite_uri, "garbage", artifact_root=tmp_path / "mlruns")
    promoted = promote(promote_inputs(context, mlflow_sqlite_uri, registry_settings.model_name,
                                      adapter_uri=candidate_uri, run_id=run_id, report_uri=judged.report_uri,
                                      gate_passed=judged.gate_passed, expected=judged.champion_version))
    assert (promoted.decision, promoted.promoted) == ("rejected", False)
    assert promoted.reason.startswith("gate failed:")
    after = db_aliases(db, registry_settings.model_name)
    # The champion (and the absent `previous`) did not move; challenger records the rejected candidate.
    assert {k: v for k, v in after.items() if k != "challenger"} == before == {"champion": champion.version}
    assert after["challenger"] == promoted.model_version != champion.version
    assert leaked_secrets(files_under(tmp_path), {"log records": caplog.text}) == []
