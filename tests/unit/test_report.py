"""The HTML report: self-contained, every model or data text escaped, charts findable and to scale."""

import re
from html import escape

from steps.judge.report import render_report
from tests.fixtures.report_data import INJECTED, sample_report


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


def test_gate_decision_and_examples() -> None:
    metrics, records = sample_report()
    html = render_report(metrics, records, examples=2, run_id="r")
    gate = re.search(r'<div data-testid="gate" class="gate (\w+)">(.*?)</div>', html, re.DOTALL)
    assert gate.group(1) == ("pass" if metrics.gate.passed else "fail")
    assert gate.group(2) == escape(metrics.gate.reason)
    assert "Wins (candidate graded better): 2 shown" in html
    assert "Losses (candidate graded worse): 2 shown" in html
    assert "&lt;script&gt;" in html.split("Wins")[1].split("Losses")[0]  # item 1 (A vs C) is a top win
    assert "unusable verdict: judge output is not JSON" in html.split("Losses")[1]
    assert "champion v3" in html
    assert "failed: length_ok" in html or "failed: stopped" in html
