"""The end-of-run summary: data counts, loss, gate and why, metrics with intervals, registry version and
every alias (read from a real SQLite registry), report paths."""

from pathlib import Path

import pytest
from rich.console import Console

from pipelines.config import load_config
from pipelines.local.records import RunSummary, StepRecord
from pipelines.local.summary_table import print_summary, registry_aliases
from steps.common.contract import RuntimeContext
from steps.common.registry import Registry
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings, local_path
from tests.fixtures.mlflow import publish_report


def _summary(tmp_path: Path) -> RunSummary:
    context = RuntimeContext(run_id="r1", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))
    report_uri = publish_report(context, "report", passed=True)  # the judge's real eval_metrics.json
    outputs = {
        "ingest": {"n_documents": 20, "n_chunks": 31, "n_quarantined": 2, "chunks_uri": "file:///c"},
        "generate_qa": {"n_train": 21, "n_val": 3, "n_test": 24, "n_rejected": 7, "qa_uri": "file:///q"},
        "finetune": {"train_loss_first": 3.3712, "train_loss_last": 0.7301, "val_loss": 1.5, "adapter_uri": "x"},
        "judge": {"gate_passed": True, "gate_reason": "Gate passed: 24 items (minimum 20).",
                  "report_uri": report_uri},
        "promote": {"model_version": "2", "decision": "promoted", "reason": "champion moved from 1 to 2",
                    "champion_version": "2"},
    }
    steps = [StepRecord(name=name, status="succeeded", duration_s=1.0, outputs=out) for name, out in outputs.items()]
    return RunSummary(run_id="r1", run_dir=str(tmp_path / "run"), config_name="local-demo", status="succeeded",
                      duration_s=5.0, steps=steps)


def _printed(summary: RunSummary, aliases) -> list[str]:
    console = Console(record=True, width=220, color_system=None)
    print_summary(summary, aliases, console=console)
    return console.export_text().splitlines()


def _row(lines: list[str], label: str) -> str:
    [line] = [line for line in lines if f" {label} " in line]
    return line


def test_summary_shows_counts_loss_gate_metrics_version_aliases_and_report(
        tmp_path: Path, mlflow_sqlite_uri: str, mlflow_model: str) -> None:
    config = load_config(overrides=[f"registry.tracking_uri={mlflow_sqlite_uri}",
                                    f"registry.model_name={mlflow_model}"], cwd=tmp_path)
    registry = Registry(config.registry, config.residency)
    first, second = (registry.create_version(f"file:///adapter-{i}", None, {}) for i in (1, 2))
    registry.set_alias("previous", first.version)
    for alias in ("champion", "challenger"):
        registry.set_alias(alias, second.version)
    summary = _summary(tmp_path)
    lines = _printed(summary, registry_aliases(config))

    assert "20 -> 31 chunks (2 quarantined)" in _row(lines, "documents")
    assert "train 21, val 3, test 24 (7 rejected)" in _row(lines, "qa pairs")
    assert "3.371 -> 0.730 (validation 1.500)" in _row(lines, "training loss")
    assert "PASSED" in _row(lines, "gate decision")
    assert "Gate passed: 24 items (minimum 20)." in _row(lines, "gate reason")
    assert "2 (promoted: champion moved from 1 to 2)" in _row(lines, "registry version")
    assert (f"challenger = version {second.version}, champion = version {second.version}, "
            f"previous = version {first.version}") in _row(lines, "aliases")
    report = local_path(summary.step("judge").outputs["report_uri"]) / "report.html"
    assert report.is_file() and str(report) in _row(lines, "judge report")
    # Candidate and champion with their intervals, from the judge's eval_metrics.json (24 items).
    assert any("held-out evaluation (24 items, 95% bootstrap intervals)" in line for line in lines)
    stop = _row(lines, "stopped with EOS")
    assert "1.00 [1.00, 1.00] (n=24)" in stop and "0.50 [" in stop  # candidate, then the base model
    assert "candidate >= 0.90" in stop
    assert "(n=6)" in _row(lines, "refused unanswerable") and "candidate >= 0.50" in _row(lines, "refused unanswerable")
    assert "0.17 [" in _row(lines, "A-rate candidate - champion")
    assert "lower bound <= +0.00" in _row(lines, "C-rate candidate - champion")


def test_aliases_missing_or_unreadable_are_said_so(tmp_path: Path) -> None:
    summary = _summary(tmp_path)
    assert ("challenger = version 2, champion = none, previous = none"
            in _row(_printed(summary, lambda: {"challenger": "2"}), "aliases"))

    def unreachable() -> dict[str, str]:
        raise ConnectionError("registry down")
    assert "unavailable (ConnectionError: registry down)" in _row(_printed(summary, unreachable), "aliases")


@pytest.mark.parametrize("until", ["ingest", "judge"])
def test_a_partial_run_shows_what_it_has(tmp_path: Path, until: str) -> None:
    summary = _summary(tmp_path)
    names = [s.name for s in summary.steps]
    summary.steps = summary.steps[:names.index(until) + 1]
    lines = _printed(summary, lambda: pytest.fail("no promote step ran: the registry is not read"))
    assert "20 -> 31 chunks" in _row(lines, "documents")
    assert not [line for line in lines if " aliases " in line or " registry version " in line]
    assert any("held-out evaluation" in line for line in lines) is (until == "judge")
