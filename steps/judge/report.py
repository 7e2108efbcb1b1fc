"""The evaluation report: one self-contained HTML page (inline CSS and SVG, no script, no network).

Every text that came from data or a model goes through `html.escape`: answers may carry HTML or prompt
injection. A Content-Security-Policy forbids scripts and remote loads as a second line of defence.
Chart elements carry `data-testid` attributes so a browser test can find and measure them.
"""

from html import escape

from steps.common.eval_report import EvalMetrics, Interval, ModelSummary
from steps.common.reference_scores import SCORE_LABELS, SCORE_NAMES
from steps.judge.records import ItemRecord
from steps.judge.report_items import examples as examples_html
from steps.judge.report_items import items_table
from steps.judge.report_scores import failed_criteria, fmt, reference_table, reliability_section

_COLORS = {"candidate": "#2563eb", "champion": "#9ca3af"}
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#111827;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
.gate{padding:.8rem 1rem;border-radius:6px;font-weight:600}
.pass{background:#dcfce7;border:1px solid #16a34a}.fail{background:#fee2e2;border:1px solid #dc2626}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}figure{margin:0}figcaption{font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#374151}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #e5e7eb;padding:.3rem .5rem;
vertical-align:top;text-align:left}
.example{border:1px solid #e5e7eb;border-radius:6px;padding:.6rem .9rem;margin:.8rem 0}
.example pre{white-space:pre-wrap;word-break:break-word;background:#f9fafb;padding:.4rem;margin:.2rem 0}
.grade{font-weight:700}.muted{color:#6b7280}
.swatch{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em;vertical-align:-.05em}
""" + "".join(f".sw-{role}{{background:{color}}}" for role, color in _COLORS.items())

_H = 200  # plot height in px (rates 0..1)
_TOP, _LEFT, _BOTTOM = 16, 40, 24


def _y(rate: float) -> float:
    return _TOP + (1.0 - min(max(rate, 0.0), 1.0)) * _H


def _bar_chart(chart_id: str, title: str, metrics: list[tuple[str, str]],
               series: dict[str, tuple[str, ModelSummary]], thresholds: dict[str, float]) -> str:
    """Grouped bars (one per series) with percentile-interval error bars and optional threshold marks."""
    bar, gap = 26, 22
    group = bar * len(series) + gap
    width = _LEFT + group * len(metrics) + 10
    parts = [(f'<svg data-testid="chart-{chart_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
              f'height="{_TOP + _H + _BOTTOM}" role="img" aria-label="{escape(title)}">')]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _y(tick)
        parts.append(f'<line x1="{_LEFT}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
                     f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    for m, (key, label) in enumerate(metrics):
        x0 = _LEFT + m * group + gap / 2
        for s, (role, (role_label, summary)) in enumerate(series.items()):
            interval: Interval | None = getattr(summary, key)
            x = x0 + s * bar
            if interval is None:
                parts.append(f'<text x="{x + bar / 2:.1f}" y="{_y(0) - 4:.1f}" '
                             'text-anchor="middle">n/a</text>')
                continue
            top = _y(interval.value)
            parts.append(
                f'<rect data-testid="bar-{key}-{role}" x="{x + 2:.1f}" y="{top:.1f}" width="{bar - 4}" '
                f'height="{_y(0) - top:.1f}" fill="{_COLORS[role]}">'
                f'<title>{escape(role_label)} {escape(label)}: {fmt(interval)}</title></rect>')
            cx, low, high = x + bar / 2, _y(interval.low), _y(interval.high)
            parts.append(
                f'<line data-testid="ci-{key}-{role}" x1="{cx:.1f}" x2="{cx:.1f}" y1="{low:.1f}" '
                f'y2="{high:.1f}" stroke="#111827" stroke-width="1.5"/>'
                + "".join(f'<line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                          f'stroke="#111827" stroke-width="1.5"/>' for y in (low, high)))
        if key in thresholds:
            y = _y(thresholds[key])
            parts.append(f'<line data-testid="threshold-{key}" x1="{x0 - 4:.1f}" '
                         f'x2="{x0 + group - gap + 4:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dc2626" '
                         f'stroke-width="2" stroke-dasharray="4 3">'
                         f'<title>threshold {thresholds[key]:.2f}</title></line>')
        parts.append(f'<text x="{x0 + (group - gap) / 2:.1f}" y="{_TOP + _H + 16}" text-anchor="middle">'
                     f'{escape(label)}</text>')
    parts.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(parts)}</figure>"


def _difference_chart(metrics: EvalMetrics) -> str:
    """The gate's paired intervals (candidate - champion) on a -1..+1 axis with the tolerance marks
    (reference scores without a margin are shown without one: they are not gated)."""
    width, left, span = 460, 70, 360
    gate = metrics.thresholds
    rows: list[tuple[str, str, Interval | None, float | None]] = [
        ("a_rate", "A-rate", metrics.gate.a_rate_difference, -gate.a_rate_tolerance),
        ("c_rate", "C-rate", metrics.gate.c_rate_difference, gate.c_rate_tolerance)]
    for name in SCORE_NAMES:
        margin = gate.reference_margins.margin(name)
        rows.append((name, SCORE_LABELS[name], metrics.gate.reference_differences.get(name),
                     None if margin is None else -margin))

    def x(value: float) -> float:
        return left + (min(max(value, -1.0), 1.0) + 1.0) / 2.0 * span

    height = 30 + 40 * len(rows)
    parts = [(f'<svg data-testid="chart-difference" xmlns="http://www.w3.org/2000/svg" width="{width}" '
              f'height="{height}" role="img" aria-label="paired differences">'),
             f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="8" y2="{height - 18}" stroke="#9ca3af"/>']
    for tick in (-1.0, -0.5, 0.0, 0.5, 1.0):
        parts.append(f'<text x="{x(tick):.1f}" y="{height - 4}" text-anchor="middle">{tick:+.1f}</text>')
    for r, (key, label, interval, tolerance) in enumerate(rows):
        y = 24 + 40 * r
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{label}</text>')
        if tolerance is not None:
            parts.append(f'<line data-testid="tolerance-{key}" x1="{x(tolerance):.1f}" x2="{x(tolerance):.1f}" '
                         f'y1="{y - 12}" y2="{y + 12}" stroke="#dc2626" stroke-width="2" '
                         'stroke-dasharray="3 2"/>')
        if interval is None:
            continue
        parts.append(f'<line data-testid="diff-ci-{key}" x1="{x(interval.low):.1f}" '
                     f'x2="{x(interval.high):.1f}" y1="{y}" y2="{y}" stroke="#111827" stroke-width="2"/>'
                     f'<circle data-testid="diff-{key}" cx="{x(interval.value):.1f}" cy="{y}" r="5" '
                     f'fill="{_COLORS["candidate"]}"><title>{label} difference: {fmt(interval)}</title>'
                     '</circle>')
    parts.append("</svg>")
    return (f"<figure><figcaption>Candidate minus champion, paired {metrics.gate.confidence:.0%} intervals "
            f"(dashed: tolerance)</figcaption>{''.join(parts)}</figure>")


def _summary_table(metrics: EvalMetrics) -> str:
    rows = [("a_rate", "A (correct, grounded)"), ("b_rate", "B (partial)"), ("c_rate", "C (wrong)"),
            ("stop_rate", "stopped with EOS"), ("refusal_rate", "refused unanswerable"),
            ("false_refusal_rate", "refused answerable"), ("language_rate", "right language"),
            ("length_rate", "length within bounds")]
    body = "".join(f"<tr><th>{label}</th><td>{fmt(getattr(metrics.candidate, key))}</td>"
                   f"<td>{fmt(getattr(metrics.champion, key))}</td></tr>" for key, label in rows)
    body += (f"<tr><th>language undetermined (too short to tell; not counted above)</th>"
             f"<td>{metrics.candidate.language_undetermined}</td>"
             f"<td>{metrics.champion.language_undetermined}</td></tr>")
    return (f"<table><tr><th>rate [{metrics.gate.confidence:.0%} CI]</th><th>candidate</th>"
            f"<th>{escape(metrics.champion_label)}</th></tr>{body}</table>")


def render_report(metrics: EvalMetrics, records: list[ItemRecord], examples: int, run_id: str) -> str:
    gate = metrics.thresholds
    series = {"candidate": ("candidate", metrics.candidate),
              "champion": (metrics.champion_label, metrics.champion)}
    legend = "".join(f'<span class="swatch sw-{role}"></span>{escape(label)}'
                     for role, (label, _) in series.items())
    # Thresholds of the gated rates (a minimum of 0 or a maximum of 1: no criterion).
    marks = {key: value for key, value, off in (("stop_rate", gate.min_stop_rate, 0.0),
                                                ("refusal_rate", gate.min_refusal_rate, 0.0),
                                                ("false_refusal_rate", gate.max_false_refusal_rate, 1.0))
             if value != off}
    grades = _bar_chart("grades", "Judge grades", [("a_rate", "A"), ("b_rate", "B"), ("c_rate", "C")],
                        series, {})
    checks = _bar_chart("checks", "Deterministic checks",
                        [("stop_rate", "stop"), ("refusal_rate", "refusal"),
                         ("false_refusal_rate", "false refusal"), ("language_rate", "language"),
                         ("length_rate", "length")],
                        series, marks)
    pairwise = ""
    if metrics.pairwise is not None:
        p = metrics.pairwise
        pairwise = (f"<h2>Pairwise preference (judged in both orders)</h2><p data-testid=\"pairwise\">"
                    f"candidate preferred {p.wins}, champion preferred {p.losses}, "
                    f"tie or inconsistent {p.ties}; net preference {fmt(p.net)}</p>")
    unusable = metrics.unusable_verdicts
    gate_class = "pass" if metrics.gate.passed else "fail"
    errors = metrics.generation_errors
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>eurolora judge report: {escape(run_id)}</title><style>{_CSS}</style></head><body>
<h1>Judge report: run {escape(run_id)}</h1>
<p>{metrics.n_items} test items; candidate against the {escape(metrics.champion_label)}.
Unusable verdicts: candidate {unusable.get("candidate", 0)} (counted as C),
champion {unusable.get("champion", 0)} (counted as A). Generation errors:
candidate {errors.get("candidate", 0)}, champion {errors.get("champion", 0)}.</p>
<div data-testid="gate" class="gate {gate_class}">{escape(metrics.gate.reason)}</div>
{failed_criteria(metrics)}
<h2>Rates with {metrics.gate.confidence:.0%} bootstrap intervals</h2>
<p>{legend}</p>
<div class="charts">{grades}{checks}{_difference_chart(metrics)}</div>
{_summary_table(metrics)}
{reference_table(metrics)}
{reliability_section(metrics)}
{pairwise}
{examples_html(records, examples)}
{items_table(records)}
</body></html>
"""
