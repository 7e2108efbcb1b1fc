"""The report's sections on the reference scores, the gate's failed criteria and the judge's reliability.

Every text that came from data or a model goes through `html.escape` (see steps/judge/report.py).
"""

from html import escape

from steps.common.eval_report import Agreement, EvalMetrics, Interval
from steps.common.reference_scores import SCORE_LABELS, SCORE_NAMES


def fmt(interval: Interval | None, signed: bool = False) -> str:
    if interval is None:
        return "n/a"
    sign = "+" if signed else ""
    return f"{interval.value:{sign}.3f} [{interval.low:{sign}.3f}, {interval.high:{sign}.3f}] (n={interval.n})"


def failed_criteria(metrics: EvalMetrics) -> str:
    criteria = metrics.gate.failed_criteria
    if not criteria:
        return ""
    return (f'<p data-testid="failed-criteria">Rejected by: '
            f'{", ".join(f"<code>{escape(c)}</code>" for c in criteria)}</p>')


def reference_table(metrics: EvalMetrics) -> str:
    """Mean reference scores of both models and their paired difference, with the gate's margin."""
    margins = metrics.thresholds.reference_margins
    rows = []
    for name in SCORE_NAMES:
        margin = margins.margin(name)
        gated = "not gated" if margin is None else f"&gt;= -{margin:.3f} (upper bound)"
        css = ' class="fail"' if name in metrics.gate.failed_criteria else ""
        rows.append(f'<tr data-testid="reference-{name}"{css}>'
                    f"<th>{SCORE_LABELS[name]}</th>"
                    f"<td>{fmt(metrics.candidate.reference.get(name))}</td>"
                    f"<td>{fmt(metrics.champion.reference.get(name))}</td>"
                    f"<td>{fmt(metrics.gate.reference_differences.get(name), signed=True)}</td>"
                    f"<td>{gated}</td></tr>")
    return ("<h2>Reference scores</h2><p class=\"muted\">Deterministic, against each item's reference answer: "
            "chrF (character n-grams, 0..1), token F1 (casefolded word tokens, elisions split) and grounding "
            "(share of the answer's content words found in its chunk; refusals not counted). The difference is "
            f"paired over items with its {metrics.gate.confidence:.0%} bootstrap interval.</p>"
            f'<table data-testid="reference-scores"><tr><th>score</th><th>candidate</th>'
            f"<th>{escape(metrics.champion_label)}</th><th>candidate - champion</th><th>gate</th></tr>"
            f"{''.join(rows)}</table>")


def _agreement_cell(result: Agreement) -> str:
    kappa = "n/a (neither side varies)" if result.kappa is None else f"{result.kappa:+.2f}"
    return (f"<td>{fmt(result.rate)}</td><td>{kappa}</td>"
            f"<td>judge A {result.judge_a} of {result.n}, signal right {result.signal_yes} of {result.n}</td>")


def reliability_section(metrics: EvalMetrics) -> str:
    reliability = metrics.judge_reliability
    if reliability is None:
        return ""
    shares = ", ".join(f"{grade} {share:.0%}" for grade, share in reliability.grade_shares.items()) or "none"
    swap = ("pairwise judging off" if reliability.swap_consistency is None
            else fmt(reliability.swap_consistency))
    warnings = "".join(f'<li data-testid="judge-warning">{escape(w)}</li>' for w in reliability.warnings)
    verdict = (f'<div class="gate fail"><b>Do not trust the judge\'s grades on this run:</b><ul>{warnings}</ul>'
               "</div>" if warnings else
               '<p data-testid="judge-trusted">Nothing stood out: the verdicts agree with the reference scores '
               "and the checks beyond chance.</p>")
    return (f'<h2>Judge reliability</h2><div data-testid="judge-reliability">{verdict}'
            f"<p>Usable verdicts by grade (the judge's own, before the refusal rule): {shares}. "
            f"Position-swap consistency (same preference in both orders): {swap}.</p>"
            "<table><tr><th>judge's A against</th><th>agreement</th><th>Cohen's kappa</th><th>counts</th></tr>"
            f"<tr><th>chrF &gt;= {reliability.reference_chrf:.2f}</th>{_agreement_cell(reliability.with_reference)}"
            f"</tr><tr><th>every deterministic check passed</th>{_agreement_cell(reliability.with_checks)}</tr>"
            "</table></div>")
