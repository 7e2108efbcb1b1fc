"""Gate statistics: seeded percentile-bootstrap intervals and the promotion decision. Pure functions.

The gate rule (every criterion must hold; `conf` = GateSettings.confidence, intervals two-sided):
  1. evidence:  n >= min_items test items were evaluated.
  2. A-rate:    for dA_i = [cand_i == A] - [champ_i == A], the paired-bootstrap upper bound of mean(dA)
                is >= -a_rate_tolerance ("not significantly worse": reject only when the whole
                interval lies below -tolerance).
  3. C-rate:    for dC_i = [cand_i == C] - [champ_i == C], the paired-bootstrap lower bound of mean(dC)
                is <= c_rate_tolerance (not significantly more wrong or hallucinated answers).
  4. stop rate: the candidate's share of answers ending with EOS is >= min_stop_rate.
  5. refusals:  if min_refusal_rate > 0, the candidate refused at least that share of the unanswerable
                questions (and there is at least one, else the criterion cannot be met).
Criteria 2-3 alone would wave through anything on a handful of items (wide intervals), hence 1.

Criteria 4-5 compare the observed rates (point estimates) with the thresholds; the reason states their
intervals. Deliberately not the interval's lower bound: a percentile-bootstrap interval of a rate that
is 0 or 1 collapses to a point (16 of 16 stopped gives [1, 1]), so a lower-bound rule would be no stricter
exactly where the sample is all-or-nothing, and on the small test sets of a local run (8 unanswerable
questions) it would demand ~7 of 8 refusals for a 0.5 threshold. Small samples are guarded by criterion 1.
"""

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel

from steps.common.eval_report import (
    GateDecision,
    GateSettings,
    Interval,
    ModelSummary,
    PreferenceSummary,
)
from steps.common.grading import Grade

Preference = Literal["candidate", "champion", "tie"]
_MAX_CELLS = 4_000_000  # resampled values held in memory at once
_EPS = 1e-12  # exact ties at a bound (0.0 vs -0.0 after float rounding) count as met


class ModelOutcomes(BaseModel):
    """Per-item outcomes of one model, aligned by item."""

    grades: list[Grade]  # after fail-closed handling of unusable verdicts
    stopped: list[bool]
    refused: list[bool]
    answerable: list[bool]
    language_ok: list[bool | None]  # None: undetermined (see steps/judge/checks.py)
    length_ok: list[bool]


def _bootstrap_means(values: np.ndarray, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(values)
    means = np.empty(samples)
    rows = max(1, _MAX_CELLS // n)
    for start in range(0, samples, rows):
        stop = min(samples, start + rows)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def mean_interval(values: Sequence[float], settings: GateSettings) -> Interval | None:
    """Mean of `values` with a seeded percentile-bootstrap interval; None when there are no values."""
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    means = _bootstrap_means(array, settings.bootstrap_samples, settings.seed)
    alpha = 1.0 - settings.confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(value=float(array.mean()), low=float(low), high=float(high), n=len(array))


def paired_difference(candidate: Sequence[bool], champion: Sequence[bool], settings: GateSettings
                      ) -> Interval | None:
    """Interval of mean(candidate_i - champion_i): resampling items keeps each item's pair together."""
    if len(candidate) != len(champion):
        raise ValueError(f"paired outcomes differ in length: {len(candidate)} vs {len(champion)}")
    return mean_interval([float(c) - float(h) for c, h in zip(candidate, champion)], settings)


def summarize(outcomes: ModelOutcomes, settings: GateSettings) -> ModelSummary:
    def rate(flags: Sequence[bool]) -> Interval | None:
        return mean_interval([float(f) for f in flags], settings)

    unanswerable = [r for r, a in zip(outcomes.refused, outcomes.answerable) if not a]
    answerable = [r for r, a in zip(outcomes.refused, outcomes.answerable) if a]
    return ModelSummary(
        n=len(outcomes.grades),
        a_rate=rate([g == "A" for g in outcomes.grades]),
        b_rate=rate([g == "B" for g in outcomes.grades]),
        c_rate=rate([g == "C" for g in outcomes.grades]),
        stop_rate=rate(outcomes.stopped),
        refusal_rate=rate(unanswerable),
        false_refusal_rate=rate(answerable),
        language_rate=rate([ok for ok in outcomes.language_ok if ok is not None]),
        language_undetermined=sum(ok is None for ok in outcomes.language_ok),
        length_rate=rate(outcomes.length_ok),
    )


def summarize_preferences(preferences: Sequence[Preference], settings: GateSettings) -> PreferenceSummary:
    score = {"candidate": 1.0, "champion": -1.0, "tie": 0.0}
    return PreferenceSummary(
        wins=sum(p == "candidate" for p in preferences),
        losses=sum(p == "champion" for p in preferences),
        ties=sum(p == "tie" for p in preferences),
        net=mean_interval([score[p] for p in preferences], settings),
    )


def _ci(interval: Interval, confidence: float) -> str:
    return f"{confidence:.0%} CI [{interval.low:+.3f}, {interval.high:+.3f}]"


def _rate(interval: Interval, confidence: float) -> str:
    return f"{interval.value:.3f} ({confidence:.0%} CI [{interval.low:.3f}, {interval.high:.3f}], n={interval.n})"


def decide(candidate: ModelOutcomes, champion: ModelOutcomes, settings: GateSettings) -> GateDecision:
    """Apply the gate rule in the module docstring; the reason names every failed criterion."""
    n = len(candidate.grades)
    conf = settings.confidence
    a_diff = paired_difference([g == "A" for g in candidate.grades], [g == "A" for g in champion.grades],
                               settings)
    c_diff = paired_difference([g == "C" for g in candidate.grades], [g == "C" for g in champion.grades],
                               settings)
    summary = summarize(candidate, settings)
    failures: list[str] = []
    passes: list[str] = []

    if n < settings.min_items:
        failures.append(f"only {n} test items were evaluated, the gate needs at least {settings.min_items}")
    else:
        passes.append(f"{n} items (minimum {settings.min_items})")
    if a_diff is not None:
        text = f"A-rate difference {a_diff.value:+.3f} ({_ci(a_diff, conf)})"
        if a_diff.high < -settings.a_rate_tolerance - _EPS:
            failures.append(f"the candidate is significantly worse on A-rate: {text} lies entirely below "
                            f"-{settings.a_rate_tolerance:.3f}")
        else:
            passes.append(text)
    if c_diff is not None:
        text = f"C-rate difference {c_diff.value:+.3f} ({_ci(c_diff, conf)})"
        if c_diff.low > settings.c_rate_tolerance + _EPS:
            failures.append(f"the candidate gives significantly more wrong answers: {text} lies entirely "
                            f"above +{settings.c_rate_tolerance:.3f}")
        else:
            passes.append(text)
    stop = summary.stop_rate
    if stop is not None:
        if stop.value < settings.min_stop_rate - _EPS:
            failures.append(f"only {_rate(stop, conf)} of the candidate's answers ended with EOS, "
                            f"below the minimum stop rate {settings.min_stop_rate:.3f}")
        else:
            passes.append(f"stop rate {_rate(stop, conf)} >= {settings.min_stop_rate:.3f}")
    if settings.min_refusal_rate > 0:
        refusal = summary.refusal_rate
        if refusal is None:
            failures.append("the test set has no unanswerable questions, so the refusal rate "
                            f"(minimum {settings.min_refusal_rate:.3f}) cannot be measured")
        elif refusal.value < settings.min_refusal_rate - _EPS:
            failures.append(f"the candidate refused only {_rate(refusal, conf)} of the unanswerable "
                            f"questions, below the minimum refusal rate {settings.min_refusal_rate:.3f}")
        else:
            passes.append(f"refusal rate {_rate(refusal, conf)} on unanswerable questions "
                          f">= {settings.min_refusal_rate:.3f}")

    if failures:
        reason = "Gate failed: " + "; ".join(failures) + "."
    else:
        reason = "Gate passed: " + "; ".join(passes) + "."
    return GateDecision(passed=not failures, reason=reason, failures=failures, n=n, confidence=conf,
                        a_rate_difference=a_diff, c_rate_difference=c_diff)
