"""What a local run prints at the end: each step's status and time, then what the run achieved as two
tables: the results (data counts, training loss, the gate's decision and why, the registry version and
every alias, the report paths) and the held-out evaluation (candidate and champion rates with intervals).
"""

import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from pipelines.local.records import RunSummary
from steps.canary.report import HTML_FILE as CANARY_HTML
from steps.common.errors import TransientError
from steps.common.storage import join_uri, local_path

_RATES = (("a_rate", "A (correct, grounded)"), ("b_rate", "B (partial)"), ("c_rate", "C (wrong)"),
          ("stop_rate", "stopped with EOS"), ("refusal_rate", "refused unanswerable"),
          ("false_refusal_rate", "refused answerable"))
ALIASES = ("challenger", "champion", "previous")
# alias -> version, read after the run (the canary may have moved them after promote); raises on failure.
AliasReader = Callable[[], dict[str, str]]


def registry_aliases(config: Any) -> AliasReader:
    """Reads the aliases from the run's registry (bounded calls, residency-checked: steps.common.registry)."""
    def read() -> dict[str, str]:
        from steps.common.registry import Registry

        return Registry(config.registry, config.residency).aliases()
    return read


def print_summary(summary: RunSummary, aliases: AliasReader | None = None, console: Console | None = None
                  ) -> None:
    console = console or Console()
    steps = Table(title=f"run {summary.run_id} ({summary.status}, {summary.duration_s:.1f}s)")
    for column in ("step", "status", "seconds"):
        steps.add_column(column)
    for step in summary.steps:
        status = f"{step.status} (from run {step.reused_from_run})" if step.reused_from_run else step.status
        steps.add_row(step.name, status, f"{step.duration_s:.1f}")
    console.print(steps)
    outputs = {s.name: s.outputs for s in summary.steps if s.outputs}
    rows = result_rows(outputs, aliases if "promote" in outputs else None)
    if rows:
        results = Table(title="results", show_header=False)
        results.add_column("what", no_wrap=True, style="bold")
        results.add_column("value")
        for label, value in rows:
            results.add_row(label, value)
        console.print(results)
    metrics = _eval_metrics(outputs.get("judge", {}))
    if metrics:
        console.print(metrics_table(metrics))
    console.print(f"run directory: {summary.run_dir}  (summary.json; steps/<step>/ inputs, outputs, log, timing)")


def result_rows(outputs: dict[str, dict[str, Any]], aliases: AliasReader | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if ingest := outputs.get("ingest"):
        rows.append(("documents", (f"{ingest['n_documents']} -> {ingest['n_chunks']} chunks "
                                   f"({ingest['n_quarantined']} quarantined)")))
    if qa := outputs.get("generate_qa"):
        rows.append(("qa pairs", (f"train {qa['n_train']}, val {qa['n_val']}, test {qa['n_test']} "
                                  f"({qa['n_rejected']} rejected)")))
    if check := outputs.get("check_dataset"):
        rows.append(("dataset check", check["reason"]))
    if ft := outputs.get("finetune"):
        rows.append(("training loss", (f"{ft['train_loss_first']:.3f} -> {ft['train_loss_last']:.3f} "
                                       f"(validation {ft['val_loss']:.3f})")))
    if judge := outputs.get("judge"):
        rows.append(("gate decision", "PASSED" if judge["gate_passed"] else "FAILED"))
        rows.append(("gate reason", judge["gate_reason"]))
    if promote := outputs.get("promote"):
        rows.append(("registry version", f"{promote['model_version']} ({promote['decision']}: {promote['reason']})"))
    if aliases is not None:
        rows.append(("aliases", _aliases_text(aliases)))
    if canary := outputs.get("canary"):
        rows.append(("canary", f"{canary['decision']}: {canary['reason']}"))
    if judge and judge["report_uri"].startswith("file://"):
        rows.append(("judge report", str(local_path(join_uri(judge["report_uri"], "report.html")))))
    if canary and canary["report_uri"].startswith("file://"):
        rows.append(("canary report", str(local_path(join_uri(canary["report_uri"], CANARY_HTML)))))
    return rows


def _aliases_text(read: AliasReader) -> str:
    try:
        found = read()
    # The run succeeded: a registry unreachable (TransientError) or refused (ResidencyError) now must not
    # hide its results.
    except (TransientError, ValueError, OSError) as exc:
        return f"unavailable ({type(exc).__name__}: {exc})"
    names = [*ALIASES, *sorted(set(found) - set(ALIASES))]
    return ", ".join(f"{name} = {'version ' + found[name] if name in found else 'none'}" for name in names)


def _eval_metrics(judge: dict[str, Any]) -> dict[str, Any] | None:
    uri = judge.get("report_uri", "")
    if not uri.startswith("file://"):
        return None
    path = local_path(join_uri(uri, "eval_metrics.json"))
    return json.loads(path.read_text()) if path.is_file() else None


def metrics_table(metrics: dict[str, Any]) -> Table:
    champion = f"champion v{metrics['champion_version']}" if metrics.get("champion_version") else "base model"
    gate = metrics["gate"]
    table = Table(title=f"held-out evaluation ({metrics['n_items']} items, "
                        f"{gate['confidence']:.0%} bootstrap intervals)")
    for column in ("rate", "candidate", champion, "gate requires"):
        table.add_column(column)
    limits = metrics["thresholds"]
    required = {"stop_rate": f"candidate >= {limits['min_stop_rate']:.2f}",
                "refusal_rate": (f"candidate >= {limits['min_refusal_rate']:.2f}"
                                 if limits["min_refusal_rate"] > 0 else "")}
    for key, label in _RATES:
        table.add_row(label, _interval(metrics["candidate"].get(key)), _interval(metrics["champion"].get(key)),
                      required.get(key, ""))
    table.add_row("A-rate candidate - champion", _interval(gate.get("a_rate_difference")), "",
                  f"upper bound >= -{limits['a_rate_tolerance']:.2f}")
    table.add_row("C-rate candidate - champion", _interval(gate.get("c_rate_difference")), "",
                  f"lower bound <= +{limits['c_rate_tolerance']:.2f}")
    return table


def _interval(value: dict[str, float] | None) -> str:
    if not value:
        return "n/a"
    return f"{value['value']:.2f} [{value['low']:.2f}, {value['high']:.2f}] (n={value['n']})"
