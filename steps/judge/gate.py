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
  6. false refusals: if max_false_refusal_rate < 1, the candidate refused at most that share of the
                answerable questions (and there is at least one, else the criterion cannot be met).
  7. reference scores (chrF, token F1, grounding; steps/common/reference_scores.py), each whose margin is
                set in `reference_margins`: for d_i = cand_i - champ_i over the items where both have the
                score, the paired-bootstrap upper bound of mean(d) is >= -margin (as 2: "not worse than the
                champion by more than the margin"); no such item at all fails closed.
Criteria 2-3 alone would wave through anything on a handful of items (wide intervals), hence 1.

Criteria 4-6 compare the observed rates (point estimates) with the thresholds; the reason states their
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
from steps.common.reference_scores import SCORE_LABELS, SCORE_NAMES, ReferenceScores, ScoreName

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
    reference: list[ReferenceScores] = []  # empty: not scored (the reference criteria cannot be met)


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


def reference_differences(candidate: ModelOutcomes, champion: ModelOutcomes, settings: GateSettings
                          ) -> dict[ScoreName, Interval | None]:
    """Paired intervals of candidate - champion per reference score, over the items where both have it."""
    if len(candidate.reference) != len(champion.reference):
        raise ValueError(f"paired reference scores differ in length: {len(candidate.reference)} vs "
                         f"{len(champion.reference)}")
    differences: dict[ScoreName, Interval | None] = {}
    for name in SCORE_NAMES:
        pairs = ((c.score(name), h.score(name)) for c, h in zip(candidate.reference, champion.reference))
        differences[name] = mean_interval([c - h for c, h in pairs if c is not None and h is not None], settings)
    return differences


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
        reference={name: mean_interval([v for s in outcomes.reference if (v := s.score(name)) is not None],
                                       settings) for name in SCORE_NAMES},
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


class _Tally:
    """Each criterion's outcome: a failure with the criterion it belongs to, or what a pass measured."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []  # (criterion, why)
        self.passes: list[str] = []

    def fail(self, criterion: str, why: str) -> None:
        self.failures.append((criterion, why))


def _rate_criteria(summary: ModelSummary, settings: GateSettings, tally: _Tally) -> None:
    """Criteria 4-6: observed rates of the candidate against fixed thresholds."""
    conf = settings.confidence
    stop = summary.stop_rate
    if stop is not None:
        if stop.value < settings.min_stop_rate - _EPS:
            tally.fail("stop_rate", f"only {_rate(stop, conf)} of the candidate's answers ended with EOS, "
                                    f"below the minimum stop rate {settings.min_stop_rate:.3f}")
        else:
            tally.passes.append(f"stop rate {_rate(stop, conf)} >= {settings.min_stop_rate:.3f}")
    if settings.min_refusal_rate > 0:
        refusal = summary.refusal_rate
        if refusal is None:
            tally.fail("refusal_rate", "the test set has no unanswerable questions, so the refusal rate "
                                       f"(minimum {settings.min_refusal_rate:.3f}) cannot be measured")
        elif refusal.value < settings.min_refusal_rate - _EPS:
            tally.fail("refusal_rate", f"the candidate refused only {_rate(refusal, conf)} of the unanswerable "
                                       f"questions, below the minimum refusal rate {settings.min_refusal_rate:.3f}")
        else:
            tally.passes.append(f"refusal rate {_rate(refusal, conf)} on unanswerable questions "
                                f">= {settings.min_refusal_rate:.3f}")
    if settings.max_false_refusal_rate < 1:
        limit, false_refusal = settings.max_false_refusal_rate, summary.false_refusal_rate
        if false_refusal is None:
            tally.fail("false_refusal_rate", "the test set has no answerable questions, so the false refusal "
                                             f"rate (maximum {limit:.3f}) cannot be measured")
        elif false_refusal.value > limit + _EPS:
            tally.fail("false_refusal_rate", f"the candidate refused {_rate(false_refusal, conf)} of the "
                                             f"answerable questions, above the maximum false refusal rate {limit:.3f}")
        else:
            tally.passes.append(f"false refusal rate {_rate(false_refusal, conf)} on answerable questions "
                                f"<= {limit:.3f}")


def _reference_criteria(differences: dict[ScoreName, Interval | None], settings: GateSettings,
                        tally: _Tally) -> None:
    """Criterion 7: each reference score with a margin is not significantly worse by more than the margin."""
    for name in SCORE_NAMES:
        margin = settings.reference_margins.margin(name)
        if margin is None:
            continue
        label, difference = SCORE_LABELS[name], differences.get(name)
        if difference is None:
            tally.fail(name, f"no item has a {label} score for both models, so the {label} margin "
                             f"({margin:.3f}) cannot be checked")
            continue
        text = f"{label} difference {difference.value:+.3f} ({_ci(difference, settings.confidence)})"
        if difference.high < -margin - _EPS:
            tally.fail(name, f"the candidate is significantly worse on {label}: {text} lies entirely "
                             f"below -{margin:.3f}")
        else:
            tally.passes.append(text)


def decide(candidate: ModelOutcomes, champion: ModelOutcomes, settings: GateSettings) -> GateDecision:
    """Apply the gate rule in the module docstring; the reason names every failed criterion."""
    n = len(candidate.grades)
    conf = settings.confidence
    a_diff = paired_difference([g == "A" for g in candidate.grades], [g == "A" for g in champion.grades],
                               settings)
    c_diff = paired_difference([g == "C" for g in candidate.grades], [g == "C" for g in champion.grades],
                               settings)
    references = reference_differences(candidate, champion, settings)
    tally = _Tally()

    if n < settings.min_items:
        tally.fail("min_items", f"only {n} test items were evaluated, the gate needs at least {settings.min_items}")
    else:
        tally.passes.append(f"{n} items (minimum {settings.min_items})")
    if a_diff is not None:
        text = f"A-rate difference {a_diff.value:+.3f} ({_ci(a_diff, conf)})"
        if a_diff.high < -settings.a_rate_tolerance - _EPS:
            tally.fail("a_rate", f"the candidate is significantly worse on A-rate: {text} lies entirely "
                                 f"below -{settings.a_rate_tolerance:.3f}")
        else:
            tally.passes.append(text)
    if c_diff is not None:
        text = f"C-rate difference {c_diff.value:+.3f} ({_ci(c_diff, conf)})"
        if c_diff.low > settings.c_rate_tolerance + _EPS:
            tally.fail("c_rate", f"the candidate gives significantly more wrong answers: {text} lies entirely "
                                 f"above +{settings.c_rate_tolerance:.3f}")
        else:
            tally.passes.append(text)
    _rate_criteria(summarize(candidate, settings), settings, tally)
    _reference_criteria(references, settings, tally)

    failures = tally.failures
    if failures:
        reason = "Gate failed: " + "; ".join(why for _, why in failures) + "."
    else:
        reason = "Gate passed: " + "; ".join(tally.passes) + "."
    return GateDecision(passed=not failures, reason=reason, failures=[why for _, why in failures],
                        failed_criteria=[criterion for criterion, _ in failures], n=n, confidence=conf,
                        a_rate_difference=a_diff, c_rate_difference=c_diff, reference_differences=references)
