"""The item-level parts of the HTML report: examples of wins and losses, and the per-item table.

Every text that came from data or a model goes through `html.escape` (see steps/judge/report.py).
"""

from html import escape

from steps.common.grading import Role
from steps.judge.item_table import CHECKS, item_rows
from steps.judge.ranking import explain, wins_and_losses
from steps.judge.records import ItemRecord

_SYMBOL = {"yes": "✓", "no": "✗", "undetermined": "?"}
_LABEL = {"stopped": "stop", "refusal_ok": "refusal", "language_ok": "language", "length_ok": "length"}


def _example(record: ItemRecord) -> str:
    def side(role: Role) -> str:
        answer = record.answer(role)
        verdict = answer.verdict
        note = (escape(verdict.rationale) if verdict.grade
                else f"unusable verdict: {escape(verdict.error or '')}")
        failed = [name for name in CHECKS if getattr(answer.checks, name) is False]
        undetermined = [name for name in CHECKS if getattr(answer.checks, name) is None]
        checks = "all checks passed" if not failed else "failed: " + ", ".join(failed)
        if undetermined:
            checks += "; undetermined: " + ", ".join(undetermined)
        return (f"<td><span class=\"grade\">{answer.grade}</span> <span class=\"muted\">{note}</span>"
                f"<pre>{escape(answer.text)}</pre><span class=\"muted\">{checks}</span></td>")

    kind = "answerable" if record.answerable else "unanswerable"
    return (f"<div class=\"example\"><div><b>Question</b> ({escape(record.language)}, {kind}):</div>"
            f"<pre>{escape(record.question)}</pre>"
            f"<div><b>Reference</b></div><pre>{escape(record.reference)}</pre>"
            f"<div data-testid=\"why\"><b>Decided by</b> {escape(explain(record))}</div>"
            f"<table><tr><th>candidate</th><th>champion</th></tr><tr>{side('candidate')}{side('champion')}"
            "</tr></table></div>")


def examples(records: list[ItemRecord], limit: int) -> str:
    wins, losses = wins_and_losses(records, limit)
    html = [("<p class=\"muted\">Ranked by judge grade, then the deterministic checks (stop and refusal "
             "first, then length and language), then the pairwise preference when judged.</p>")]
    for key, title, chosen in (("wins", "Wins (candidate better)", wins),
                               ("losses", "Losses (candidate worse)", losses)):
        html.append(f"<h2 data-testid=\"{key}\">{title}: {len(chosen)} shown</h2>")
        html.extend(_example(r) for r in chosen)
        if not chosen:
            html.append("<p class=\"muted\">none</p>")
    return "".join(html)


def _checks_cell(row: dict[str, str], role: Role) -> str:
    return " ".join(f"{_LABEL[name]}&nbsp;{_SYMBOL[row[f'{role}_{name}']]}" for name in CHECKS)


def items_table(records: list[ItemRecord]) -> str:
    head = ("<tr><th>#</th><th>question</th><th>lang</th><th>answerable</th><th>outcome</th>"
            "<th>candidate</th><th>candidate checks</th><th>champion</th><th>champion checks</th>"
            "<th>pairwise</th></tr>")
    body = "".join(
        f"<tr data-testid=\"item-row\"><td>{row['index']}</td><td>{escape(row['question'])}</td>"
        f"<td>{escape(row['language'])}</td><td>{row['answerable']}</td>"
        f"<td title=\"{escape(row['why'])}\">{row['outcome']}</td>"
        f"<td class=\"grade\">{row['candidate_grade']}</td><td>{_checks_cell(row, 'candidate')}</td>"
        f"<td class=\"grade\">{row['champion_grade']}</td><td>{_checks_cell(row, 'champion')}</td>"
        f"<td>{row['preference']}</td></tr>"
        for row in item_rows(records))
    return (f"<h2>All {len(records)} items</h2><p class=\"muted\">✓ passed, ✗ failed, ? undetermined "
            "(too short to tell the language). The answers are in items.csv and items.jsonl.</p>"
            f"<table data-testid=\"items-table\">{head}{body}</table>")
