"""The HTML report: self-contained, every model or data text escaped, charts findable and to scale."""

import re
from html import escape

from steps.common.eval_report import GateSettings
from steps.judge.records import ItemRecord, measure
from steps.judge.report import render_report
from tests.fixtures.report_data import INJECTED, make_answer, make_record, sample_report


def test_model_text_is_escaped_and_nothing_executes() -> None:
    metrics, records = sample_report()
    html = render_report(metrics, records, examples=5, run_id="run<1>")
    assert INJECTED not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "&quot;&lt;i&gt;clause&lt;/i&gt;&quot; &amp; rule" in html
    assert "graded A &lt;b&gt;because&lt;/b&gt;" in html
    assert "run&lt;1&gt;" in html


def test_report_is_self_contained() -> None:
    metrics, records = sample_report()
    html = render_report(metrics, records, examples=5, run_id="r")
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"<(link|script|iframe|object|embed)\b", html, re.IGNORECASE)
    assert not re.search(r"<[^>]*\s(src|href)\s*=", html, re.IGNORECASE)
    assert not re.search(r"url\(", html, re.IGNORECASE)
    # The only URL is the SVG namespace identifier, which is never fetched.
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}


def test_charts_have_findable_elements_drawn_to_scale() -> None:
    metrics, records = sample_report()
    html = render_report(metrics, records, examples=5, run_id="r")
    for key in ("a_rate", "b_rate", "c_rate", "stop_rate", "refusal_rate", "language_rate", "length_rate"):
        for role in ("candidate", "champion"):
            assert f'data-testid="bar-{key}-{role}"' in html
            assert f'data-testid="ci-{key}-{role}"' in html
    for testid in ("threshold-stop_rate", "threshold-refusal_rate", "diff-ci-a_rate", "diff-ci-c_rate",
                   "tolerance-a_rate", "gate", "pairwise"):
        assert f'data-testid="{testid}"' in html
    bar = re.search(r'<rect data-testid="bar-a_rate-candidate" x="[\d.]+" y="[\d.]+" width="\d+" '
                    r'height="([\d.]+)"', html)
    assert float(bar.group(1)) == round(metrics.candidate.a_rate.value * 200, 1)


def test_measure_counts_what_the_report_shows() -> None:
    metrics, _ = sample_report()
    assert metrics.unusable_verdicts == {"candidate": 1, "champion": 0}
    assert metrics.generation_errors == {"candidate": 0, "champion": 0}
    assert (metrics.pairwise.wins, metrics.pairwise.losses, metrics.pairwise.ties) == (10, 10, 10)
    assert metrics.candidate.c_rate.value == 7 / 30  # 6 graded C, and the unusable verdict counts as C
    assert metrics.gate.n == metrics.n_items == 30


def _sections(html: str) -> tuple[str, str, str]:
    """(wins, losses, items table) parts of the page."""
    wins = html.split('data-testid="wins"')[1].split('data-testid="losses"')[0]
    losses = html.split('data-testid="losses"')[1].split('data-testid="items-table"')[0]
    return wins, losses, html.split('data-testid="items-table"')[1]


def _shown(section: str) -> list[int]:
    return [int(n) for n in re.findall(r"<pre>Question (\d+):", section)]


def test_gate_decision_and_examples() -> None:
    metrics, records = sample_report()
    html = render_report(metrics, records, examples=2, run_id="r")
    gate = re.search(r'<div data-testid="gate" class="gate (\w+)">(.*?)</div>', html, re.DOTALL)
    assert gate.group(1) == ("pass" if metrics.gate.passed else "fail")
    assert gate.group(2) == escape(metrics.gate.reason)
    wins, losses, _ = _sections(html)
    # Grade first; among the A-vs-C wins, 21 (champion in the wrong language) before 6, then 1.
    assert _shown(wins) == [21, 6] and "Wins (candidate better): 2 shown" in wins
    assert _shown(losses) == [2, 29] and "Losses (candidate worse): 2 shown" in losses
    assert "Decided by</b> grade A vs C" in wins and "Decided by</b> grade C vs A" in losses
    two, twenty_nine = losses.split('<div class="example">')[1:]
    assert "unusable verdict: judge output is not JSON" in two
    assert twenty_nine.count("failed: stopped") == 2  # cut at the token limit on both sides
    assert "champion v3" in html
    more_wins, _, _ = _sections(render_report(metrics, records, examples=5, run_id="r"))
    assert 1 in _shown(more_wins) and "&lt;script&gt;" in more_wins  # the injected answer, escaped


def test_all_a_grades_are_ranked_by_checks_then_preference() -> None:
    """A small judge grades everything A: wins and losses come from the deterministic checks and the
    pairwise preference."""
    def record(i: int, candidate: dict, champion: dict, answerable: bool = True,
               preference: str | None = None) -> ItemRecord:
        return make_record(i, make_answer(f"cand {i}", "A", "candidate", answerable=answerable, **candidate),
                           make_answer(f"champ {i}", "A", "champion", answerable=answerable, **champion),
                           answerable=answerable, preference=preference)

    records = [
        record(0, {}, {"stopped": False}),  # win: only the candidate stopped
        record(1, {"refused": False}, {"refused": True}, answerable=False),  # loss: a missed refusal
        record(2, {"length_ok": False}, {}),  # loss on length, a weaker tier than stop and refusal
        record(3, {}, {}, preference="candidate"),  # win by preference only
        record(4, {}, {}, preference="tie"),  # a tie: shown in neither
        record(5, {"language_ok": None}, {}),  # an undetermined language decides nothing: a tie
        record(6, {"stopped": False, "length_ok": False}, {"language_ok": False}),  # loss: stop outranks
    ]
    metrics = measure(records, None, GateSettings(min_items=1, bootstrap_samples=100), {})
    assert metrics.candidate.a_rate.value == metrics.champion.a_rate.value == 1.0
    wins, losses, table = _sections(render_report(metrics, records, examples=5, run_id="r"))
    assert _shown(wins) == [0, 3]
    assert _shown(losses) == [1, 6, 2]  # the gated-check losses before the length loss
    assert "same grade A; checks: stopped candidate yes, champion no" in wins
    assert "pairwise judge preferred the candidate" in wins
    assert "refusal_ok candidate no, champion yes" in losses
    outcomes = re.findall(r'<tr data-testid="item-row"><td>(\d+)</td>.*?<td title="[^"]*">(\w+)</td>', table)
    assert outcomes == [("0", "win"), ("1", "loss"), ("2", "loss"), ("3", "win"), ("4", "tie"),
                        ("5", "tie"), ("6", "loss")]


def test_items_table_has_one_escaped_row_per_item_with_grades_and_checks() -> None:
    metrics, records = sample_report()
    *_, table = _sections(render_report(metrics, records, examples=0, run_id="r"))
    rows = re.findall(r'<tr data-testid="item-row">(.*?)</tr>', table)
    assert len(rows) == len(records) == 30
    assert "<i>" not in table and "&quot;&lt;i&gt;clause&lt;/i&gt;&quot; &amp; rule" in rows[0]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    # Item 1: candidate A, champion C; item 2: the unusable candidate verdict counted as C.
    assert (cells[1][5], cells[1][7]) == ("A", "C") and (cells[2][5], cells[2][7]) == ("C", "A")
    assert cells[9][6] == "stop&nbsp;✗ refusal&nbsp;✓ language&nbsp;✓ length&nbsp;✓"  # candidate cut off
    assert cells[3][6].startswith("stop&nbsp;✓ refusal&nbsp;✓ language&nbsp;✗")  # wrong language
    assert all(row[9] in ("candidate", "champion", "tie") for row in cells)


def test_report_shows_reference_scores_failed_criteria_and_judge_reliability() -> None:
    metrics, records = sample_report()
    html = render_report(metrics, records, examples=2, run_id="r")
    table = html.split('data-testid="reference-scores"')[1].split("</table>")[0]
    for name in ("chrf", "token_f1", "grounding"):
        assert f'data-testid="reference-{name}"' in table
        assert f'data-testid="diff-ci-{name}"' in html  # the paired interval in the difference chart
    chrf = metrics.gate.reference_differences["chrf"]
    assert f"{chrf.value:+.3f} [{chrf.low:+.3f}, {chrf.high:+.3f}] (n=30)" in table
    assert "&gt;= -0.050 (upper bound)" in table and table.count("not gated") == 2
    assert 'data-testid="tolerance-chrf"' in html and 'data-testid="tolerance-grounding"' not in html
    assert 'data-testid="threshold-false_refusal_rate"' in html
    reliability = html.split('data-testid="judge-reliability"')[1]
    assert "Position-swap consistency (same preference in both orders): 0.667 [" in reliability  # 20 of 30
    assert f"chrF &gt;= {metrics.judge_reliability.reference_chrf:.2f}" in reliability
    if metrics.gate.failed_criteria:
        listed = html.split('data-testid="failed-criteria"')[1].split("</p>")[0]
        assert all(f"<code>{c}</code>" in listed for c in metrics.gate.failed_criteria)


def test_report_names_the_failed_criteria_and_warns_about_an_untrustworthy_judge() -> None:
    # Every answer graded A although the candidate refuses answerable questions: rejected for false refusals.
    records = [make_record(i, make_answer("The provided context does not contain the answer to this question.",
                                          "A", "candidate", refused=True),
                           make_answer("Reference.", "A", "champion")) for i in range(12)]
    metrics = measure(records, None, GateSettings(min_items=1, min_refusal_rate=0.0, bootstrap_samples=200), {})
    assert metrics.gate.failed_criteria == ["false_refusal_rate"]
    html = render_report(metrics, records, examples=2, run_id="r")
    assert '<p data-testid="failed-criteria">Rejected by: <code>false_refusal_rate</code></p>' in html
    warnings = re.findall(r'<li data-testid="judge-warning">(.*?)</li>', html)
    assert warnings[0] == ("the judge graded 24 of 24 usable verdicts A: its verdicts hardly separate good "
                           "answers from bad ones")
    assert 'data-testid="judge-trusted"' not in html
