"""Publish the judge's results as one artifact: eval_metrics.json, items.jsonl, items.csv, report.html."""

import json
from pathlib import Path

from steps.common.contract import RuntimeContext, publishing
from steps.common.eval_report import EvalMetrics, write_eval_report
from steps.judge import ITEMS_FILE, ITEMS_TABLE_FILE, REPORT_FILE
from steps.judge.item_table import write_csv
from steps.judge.records import ItemRecord
from steps.judge.report import render_report


def publish_results(context: RuntimeContext, metrics: EvalMetrics, records: list[ItemRecord], examples: int,
                    name: str = "report") -> str:
    """The URI of the published directory; nothing is visible before every file is written."""
    with publishing(context, "judge", name) as (out_dir, report_uri):
        write_eval_report(Path(out_dir), metrics)
        with Path(out_dir, ITEMS_FILE).open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r.model_dump(mode="json"), ensure_ascii=False) + "\n"
                              for r in records)
        write_csv(records, Path(out_dir, ITEMS_TABLE_FILE))
        Path(out_dir, REPORT_FILE).write_text(render_report(metrics, records, examples, context.run_id),
                                              encoding="utf-8")
    return report_uri
