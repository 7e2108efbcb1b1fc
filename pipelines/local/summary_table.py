"""The table printed at the end of a local run: each step, its status, time and outputs."""

from rich.console import Console
from rich.table import Table

from pipelines.local.records import RunSummary


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"run {summary.run_id} ({summary.status}, {summary.duration_s:.1f}s)")
    for column in ("step", "status", "seconds", "outputs"):
        table.add_column(column)
    for step in summary.steps:
        outputs = "\n".join(f"{k}: {v}" for k, v in step.outputs.items())
        status = f"{step.status} (from {step.reused_from_run})" if step.reused_from_run else step.status
        table.add_row(step.name, status, f"{step.duration_s:.1f}", outputs)
    console.print(table)
    console.print(f"run directory: {summary.run_dir}  (summary.json, steps/<step>/log.txt)")
