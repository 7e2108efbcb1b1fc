"""The promote step against a real MLflow registry in a SQLite file (no server), on reports the judge's
own code wrote (tests/fixtures/mlflow.py: publish_report)."""

import json
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.registry import Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.promote import PromoteOutputs, flatten_numbers, run
from tests.fixtures.mlflow import (
    make_finetune_run,
    mlflow_client,
    promote_inputs,
    publish_adapter,
    publish_report,
)


def _candidate(context: RuntimeContext, uri: str, model: str, tmp_path: Path, name: str, *,
               passed: bool = True, expected: str = "", run_id: str | None = None) -> object:
    run_id = run_id or make_finetune_run(uri, "eurolora", tmp_path / "mlartifacts")
    adapter = publish_adapter(context, f"adapter-{name}", seed=name)
    report = publish_report(context, f"report-{name}", passed=passed)
    return promote_inputs(context, uri, model, adapter_uri=adapter, run_id=run_id, report_uri=report,
                          gate_passed=passed, expected=expected, lock={"settle_s": 0.05})


def _eval_metrics(context: RuntimeContext, report_uri: str, tmp_path: Path) -> dict:
    return json.loads((context.store().materialize(report_uri, tmp_path / "report") / "eval_metrics.json")
                      .read_text())


def _aliases(uri: str, model: str) -> dict[str, str]:
    return {k: str(v) for k, v in mlflow_client(uri).get_registered_model(model).aliases.items()}


def test_first_promotion_creates_version_with_lineage_and_sets_aliases(
        context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    inputs = _candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "a")
    out = run(inputs)

    assert isinstance(out, PromoteOutputs)
    assert (out.decision, out.promoted, out.champion_version) == ("promoted", True, out.model_version)
    assert _aliases(mlflow_sqlite_uri, mlflow_model) == {"champion": out.model_version,
                                                         "challenger": out.model_version}
    mv = mlflow_client(mlflow_sqlite_uri).get_model_version(mlflow_model, out.model_version)
    assert mv.run_id == inputs.mlflow_run_id
    assert mv.source.endswith(f"{inputs.mlflow_run_id}/artifacts/adapter")
    # The adapter really was logged to the finetune run, byte for byte.
    logged = Path(mv.source.removeprefix("file://"))
    published = context.store().materialize(inputs.adapter_uri, tmp_path / "check")
    for name in ("adapter_model.safetensors", "adapter_config.json", "README.md"):
        assert (logged / name).read_bytes() == (published / name).read_bytes()
    tags = mv.tags
    # Promoted: served from a copy outside the run's expiring prefix, with the same digest.
    assert tags["eurolora.run_adapter_uri"] == inputs.adapter_uri
    models_copy = f"{context.storage.artifact_root}/models/{mlflow_model}/v{out.model_version}"
    assert tags["eurolora.adapter_uri"] == models_copy
    store = context.store()
    assert store.read_manifest(models_copy).digest == store.read_manifest(inputs.adapter_uri).digest
    assert tags["eurolora.base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert tags["eurolora.base_model_digest"] == "sha256:" + "ab" * 32
    assert tags["eurolora.dataset_digest"] == "sha256:" + "cd" * 32
    assert tags["eurolora.code_version"] == "0.1.0+test"
    assert tags["eurolora.judge_model"] == "SmolLM2-135M-Instruct"
    assert tags["eurolora.qa_model"] == "qa-writer"
    assert tags["eurolora.corpus_digest"] == "sha256:" + "ef" * 32
    assert tags["eurolora.pipeline_run_id"] == "t"
    assert len(tags["eurolora.adapter_digest"]) == 64
    # The gate's numbers as the judge wrote them to eval_metrics.json, one tag per number.
    report = _eval_metrics(context, inputs.report_uri, tmp_path)
    assert tags["eurolora.gate.passed"] == "true" and tags["eurolora.gate.reason"] == report["gate"]["reason"]
    assert (tags["eurolora.metrics.gate.n"], tags["eurolora.metrics.gate.confidence"]) == ("24", "0.95")
    for difference in ("a_rate_difference", "c_rate_difference"):
        for bound in ("value", "low", "high"):
            assert tags[f"eurolora.metrics.gate.{difference}.{bound}"] == repr(report["gate"][difference][bound])
    # ... and as metrics of the finetune run, where MLflow's UI shows them.
    run_metrics = mlflow_client(mlflow_sqlite_uri).get_run(inputs.mlflow_run_id).data.metrics
    assert run_metrics["judge.gate.n"] == 24 and run_metrics["judge.gate.a_rate_difference.value"] == \
        report["gate"]["a_rate_difference"]["value"]
    for side in ("candidate", "champion"):
        for rate in ("a_rate", "c_rate", "stop_rate", "refusal_rate"):
            for bound in ("value", "low", "high"):
                assert tags[f"eurolora.metrics.{side}.{rate}.{bound}"] == repr(report[side][rate][bound])
    assert tags["eurolora.metrics.candidate.stop_rate.value"] == "1.0"
    for score in ("chrf", "token_f1", "grounding"):  # the reference scores and their paired intervals
        for bound in ("value", "low", "high"):
            assert (tags[f"eurolora.metrics.gate.reference_differences.{score}.{bound}"]
                    == repr(report["gate"]["reference_differences"][score][bound]))
            for side in ("candidate", "champion"):
                assert (tags[f"eurolora.metrics.{side}.reference.{score}.{bound}"]
                        == repr(report[side]["reference"][score][bound]))
    assert "eurolora.metrics.gate.passed" not in tags  # booleans are not numbers
    assert "eurolora.metrics.truncated" not in tags
    assert tags["eurolora.decision"] == "promoted"
    assert "no champion" in tags["eurolora.reason"]


def test_second_promotion_moves_champion_and_previous(
        context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    first = run(_candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "a"))
    second = run(_candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "b",
                            expected=first.model_version))

    assert second.decision == "promoted" and second.model_version != first.model_version
    assert _aliases(mlflow_sqlite_uri, mlflow_model) == {
        "champion": second.model_version, "previous": first.model_version, "challenger": second.model_version}
    assert second.champion_version == second.model_version


def test_rejected_candidate_keeps_champion(
        context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    champion = run(_candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "a"))
    rejected = _candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "b", passed=False,
                          expected=champion.model_version)
    out = run(rejected)

    assert (out.decision, out.promoted) == ("rejected", False)
    assert out.champion_version == champion.model_version
    gate_reason = _eval_metrics(context, rejected.report_uri, tmp_path)["gate"]["reason"]
    assert gate_reason.startswith("Gate failed: only 0.500") and "minimum stop rate 0.900" in gate_reason
    assert out.reason == f"gate failed: {gate_reason}"
    aliases = _aliases(mlflow_sqlite_uri, mlflow_model)
    assert aliases["champion"] == champion.model_version and "previous" not in aliases
    assert aliases["challenger"] == out.model_version
    tags = mlflow_client(mlflow_sqlite_uri).get_model_version(mlflow_model, out.model_version).tags
    assert (tags["eurolora.decision"], tags["eurolora.gate.passed"]) == ("rejected", "false")


def test_refuses_when_champion_moved_after_the_judge_read_it(
        context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    v1 = run(_candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "a"))
    # Two candidates judged against v1; the first one promotes, the second must be refused.
    late = _candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "c", expected=v1.model_version)
    v2 = run(_candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "b", expected=v1.model_version))
    out = run(late)

    assert v2.decision == "promoted"
    assert (out.decision, out.promoted, out.champion_version) == ("refused_race", False, v2.model_version)
    assert f"champion moved: it is version {v2.model_version}" in out.reason
    assert f"against version {v1.model_version}" in out.reason
    aliases = _aliases(mlflow_sqlite_uri, mlflow_model)
    assert (aliases["champion"], aliases["previous"]) == (v2.model_version, v1.model_version)
    tags = mlflow_client(mlflow_sqlite_uri).get_model_version(mlflow_model, out.model_version).tags
    assert tags["eurolora.decision"] == "refused_race" and "champion moved" in tags["eurolora.reason"]


def test_expecting_no_champion_is_refused_once_one_exists(
        context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    run(_candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "a"))
    out = run(_candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "b", expected=""))
    assert out.decision == "refused_race" and "against no champion" in out.reason


def test_retried_step_reuses_its_version_and_is_idempotent(
        context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    inputs = _candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "a")
    first, again = run(inputs), run(inputs)
    assert again.model_version == first.model_version
    assert again.decision == "promoted" and "already the champion" in again.reason
    versions = mlflow_client(mlflow_sqlite_uri).search_model_versions(f"name = '{mlflow_model}'")
    assert len(versions) == 1


def test_inconsistent_gate_flag_is_refused_before_any_registry_write(
        context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    inputs = _candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "a", passed=False)
    inputs = inputs.model_copy(update={"gate_passed": True})
    with pytest.raises(ValueError, match="gate_passed=True but .* says gate.passed=False"):
        run(inputs)
    assert Registry(RegistrySettings(tracking_uri=mlflow_sqlite_uri, model_name=mlflow_model),
                    ResidencyPolicy()).aliases() == {}


def test_report_without_gate_is_a_clear_error(context: RuntimeContext, mlflow_sqlite_uri: str,
                                              mlflow_model: str, tmp_path: Path) -> None:
    from steps.common.contract import publishing

    inputs = _candidate(context, mlflow_sqlite_uri, mlflow_model, tmp_path, "a")
    with publishing(context, "judge", "bad") as (local, uri):
        (local / "eval_metrics.json").write_text('{"candidate": {}}')
    with pytest.raises(ValueError, match="not a valid judge report"):
        run(inputs.model_copy(update={"report_uri": uri}))


def test_flatten_numbers_keeps_numeric_leaves_only() -> None:
    assert flatten_numbers({"a": 1, "b": {"c": 0.5, "d": True, "e": "x", "f weird/key": 2}, "g": [1]}) == {
        "a": 1, "b.c": 0.5, "b.f_weird_key": 2}
