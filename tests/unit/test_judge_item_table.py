"""items.csv: one row per item with both grades, every check and the outcome; spreadsheet-safe."""

import csv
from pathlib import Path

from steps.judge.item_table import COLUMNS, write_csv
from tests.fixtures.report_data import INJECTED, make_answer, make_record, sample_report


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def test_rows_carry_grades_checks_and_outcome(tmp_path: Path) -> None:
    _, records = sample_report()
    write_csv(records, tmp_path / "items.csv")
    rows = _read(tmp_path / "items.csv")
    assert [r["index"] for r in rows] == [str(i) for i in range(30)]
    one, two, three, four = rows[1], rows[2], rows[3], rows[4]
    assert (one["candidate_grade"], one["champion_grade"], one["outcome"]) == ("A", "C", "win")
    assert one["candidate_answer"] == INJECTED  # CSV is data, not markup: kept verbatim
    assert (two["candidate_grade"], two["candidate_verdict_usable"], two["outcome"]) == ("C", "no", "loss")
    assert (three["candidate_language_ok"], three["candidate_stopped"]) == ("no", "yes")
    assert (four["candidate_stopped"], four["champion_stopped"]) == ("yes", "no")
    assert rows[0]["answerable"] == "no" and rows[0]["preference"] == "candidate"
    assert rows[1]["question"] == 'Question 1: what does "<i>clause</i>" & rule say?'  # quotes round-trip


def test_formula_cells_are_neutralised_and_undetermined_is_explicit(tmp_path: Path) -> None:
    answer = make_answer("=HYPERLINK(\"http://evil\")", "A", "candidate", language_ok=None)
    record = make_record(0, answer, make_answer("-1 weeks", "B", "champion"))
    write_csv([record], tmp_path / "items.csv")
    [row] = _read(tmp_path / "items.csv")
    assert row["candidate_answer"] == "'=HYPERLINK(\"http://evil\")"
    assert row["champion_answer"] == "'-1 weeks"
    assert row["candidate_language_ok"] == "undetermined"
    assert row["preference"] == "not judged"
    assert (row["outcome"], row["why"]) == ("win", "grade A vs B")
