"""The per-item table: one flat row per test item, written as `items.csv` and shown in the HTML report.

`items.jsonl` keeps the full records (verdicts, rationales, token counts); this table is the view a
reviewer sorts and filters: question, both answers, both grades, every check, the reference scores (empty:
not applicable), preference and outcome.
"""

import csv
from pathlib import Path

from steps.common.grading import Role
from steps.common.reference_scores import SCORE_NAMES
from steps.judge.checks import AnswerChecks
from steps.judge.ranking import explain, outcome, yes_no
from steps.judge.records import ItemRecord

CHECKS = ("stopped", "refusal_ok", "language_ok", "length_ok")
COLUMNS = ("index", "language", "answerable", "question", "reference", "outcome", "why",
           *(f"{role}_{field}" for role in ("candidate", "champion")
             for field in ("grade", "verdict_usable", *CHECKS, *SCORE_NAMES, "answer")),
           "preference")
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection): such cells get a
# leading apostrophe, which spreadsheets show as text. Model answers and documents are untrusted.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _side(record: ItemRecord, role: Role) -> dict[str, str]:
    answer = record.answer(role)
    checks: AnswerChecks = answer.checks
    row = {f"{role}_grade": answer.grade, f"{role}_verdict_usable": yes_no(answer.verdict.grade is not None),
           f"{role}_answer": answer.text}
    row.update({f"{role}_{name}": yes_no(getattr(checks, name)) for name in CHECKS})
    row.update({f"{role}_{name}": "" if (value := answer.scores.score(name)) is None else f"{value:.3f}"
                for name in SCORE_NAMES})
    return row


def item_rows(records: list[ItemRecord]) -> list[dict[str, str]]:
    return [{"index": str(r.index), "language": r.language, "answerable": yes_no(r.answerable),
             "question": r.question, "reference": r.reference, "outcome": outcome(r), "why": explain(r),
             **_side(r, "candidate"), **_side(r, "champion"),
             "preference": r.preference or "not judged"} for r in records]


def _safe(cell: str) -> str:
    return f"'{cell}" if cell.startswith(_FORMULA_START) else cell


def write_csv(records: list[ItemRecord], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({key: _safe(value) for key, value in row.items()} for row in item_rows(records))
