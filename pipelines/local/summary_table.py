"""What a local run prints at the end: each step's status and time, then what the run achieved
(data counts, training loss, candidate vs champion with intervals, the gate and the registry)."""

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from pipelines.local.records import RunSummary
from steps.canary.report import HTML_FILE as CANARY_HTML
from steps.common.storage import join_uri, local_path

_RATES = ("a_rate", "c_rate", "stop_rate", "refusal_rate")


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    console = console or Console()
    steps = Table(title=f"run {summary.run_id} ({summary.status}, {summary.duration_s:.1f}s)")
    for column in ("step", "status", "seconds"):
        steps.add_column(column)
    for step in summary.steps:
        status = f"{step.status} (from run {step.reused_from_run})" if step.reused_from_run else step.status
        steps.add_row(step.name, status, f"{step.duration_s:.1f}")
    console.print(steps)
    outputs = {s.name: s.outputs for s in summary.steps if s.outputs}
    for line in _result_lines(outputs):
        console.print(line)
    metrics = _eval_metrics(outputs.get("judge", {}))
    if metrics:
        console.print(_metrics_table(metrics))
    console.print(f"run directory: {summary.run_dir}  (summary.json; steps/<step>/ inputs, outputs, log, timing)")


def _result_lines(outputs: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    if ingest := outputs.get("ingest"):
        lines.append(f"data: {ingest['n_documents']} documents -> {ingest['n_chunks']} chunks "
                     f"({ingest['n_quarantined']} quarantined)  {ingest['chunks_uri']}")
    if qa := outputs.get("generate_qa"):
        lines.append(f"qa pairs: train {qa['n_train']}, val {qa['n_val']}, test {qa['n_test']} "
                     f"({qa['n_rejected']} rejected)  {qa['qa_uri']}")
    if check := outputs.get("check_dataset"):
        lines.append(f"dataset: {check['reason']}")
    if ft := outputs.get("finetune"):
        lines.append(f"training loss: {ft['train_loss_first']:.3f} -> {ft['train_loss_last']:.3f} "
                     f"(validation {ft['val_loss']:.3f})  {ft['adapter_uri']}")
    if judge := outputs.get("judge"):
        verdict = "PASSED" if judge["gate_passed"] else "FAILED"
        lines.append(f"gate: {verdict}: {judge['gate_reason']}")
        lines.append(f"report: {local_path(join_uri(judge['report_uri'], 'report.html'))}")
    if promote := outputs.get("promote"):
        lines.append(f"registry: version {promote['model_version']} is challenger; champion = version "
                     f"{promote['champion_version'] or 'none'} ({promote['decision']}: {promote['reason']})")
    if canary := outputs.get("canary"):
        lines.append(f"canary: {canary['decision']}: {canary['reason']} (champion now: version "
                     f"{canary['champion_version'] or 'none, the base model'})")
        if canary["report_uri"].startswith("file://"):
            lines.append(f"canary report: {local_path(join_uri(canary['report_uri'], CANARY_HTML))}")
    return lines


def _eval_metrics(judge: dict[str, Any]) -> dict[str, Any] | None:
    uri = judge.get("report_uri", "")
    if not uri.startswith("file://"):
        return None
    path = local_path(join_uri(uri, "eval_metrics.json"))
    return json.loads(path.read_text()) if path.is_file() else None


def _metrics_table(metrics: dict[str, Any]) -> Table:
    champion = f"champion v{metrics['champion_version']}" if metrics.get("champion_version") else "base model"
    table = Table(title=f"held-out evaluation ({metrics['n_items']} items, "
                        f"{metrics['thresholds']['confidence']:.0%} intervals)")
    for column in ("rate", "candidate", champion):
        table.add_column(column)
    for rate in _RATES:
        table.add_row(rate, _interval(metrics["candidate"].get(rate)), _interval(metrics["champion"].get(rate)))
    return table


def _interval(value: dict[str, float] | None) -> str:
    return "n/a" if not value else f"{value['value']:.2f} [{value['low']:.2f}, {value['high']:.2f}]"
