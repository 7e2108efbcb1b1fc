"""The gate's statistics and decision on inputs whose outcome is known."""

import pytest

from steps.common.eval_report import GateSettings, ReferenceMargins
from steps.common.reference_scores import ReferenceScores
from steps.judge.gate import (
    ModelOutcomes,
    decide,
    mean_interval,
    paired_difference,
    summarize,
    summarize_preferences,
)

LENIENT = GateSettings(min_items=1, min_stop_rate=0.0, min_refusal_rate=0.0)


def outcomes(grades: str, stopped: int | None = None, unanswerable: int = 0, refused: int = 0
             ) -> ModelOutcomes:
    """`grades` like "AABC"; the first `unanswerable` items are unanswerable, the first `refused` refused."""
    n = len(grades)
    stopped = n if stopped is None else stopped
    return ModelOutcomes(
        grades=list(grades),
        stopped=[i < stopped for i in range(n)],
        refused=[i < refused for i in range(n)],
        answerable=[i >= unanswerable for i in range(n)],
        language_ok=[True] * n,
        length_ok=[True] * n,
    )


def test_clearly_better_candidate_passes() -> None:
    candidate = outcomes("A" * 80 + "B" * 15 + "C" * 5, unanswerable=10, refused=10)
    champion = outcomes("A" * 40 + "B" * 20 + "C" * 40)
    decision = decide(candidate, champion, GateSettings())
    assert decision.passed, decision.reason
    assert decision.failures == []
    assert decision.reason.startswith("Gate passed: 100 items (minimum 20); ")
    assert decision.a_rate_difference.value == pytest.approx(0.40)
    assert decision.a_rate_difference.low > 0.2
    assert decision.c_rate_difference.high < -0.2


def test_clearly_worse_candidate_fails_with_numbers() -> None:
    candidate = outcomes("A" * 30 + "C" * 70)
    champion = outcomes("A" * 80 + "C" * 20)
    decision = decide(candidate, champion, LENIENT)
    assert not decision.passed
    assert len(decision.failures) == 2  # A-rate and C-rate
    assert "significantly worse on A-rate" in decision.reason
    assert "A-rate difference -0.500" in decision.reason
    assert "C-rate difference +0.500" in decision.reason
    assert decision.a_rate_difference.high < 0


def test_equal_models_pass_with_a_degenerate_interval() -> None:
    same = outcomes("ABC" * 10)
    decision = decide(same, same, LENIENT)
    assert decision.passed, decision.reason
    interval = decision.a_rate_difference
    assert (interval.value, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_small_sample_fails_closed_on_min_items_but_is_not_significantly_worse() -> None:
    candidate, champion = outcomes("AACCC"), outcomes("AAAAC")
    strict = decide(candidate, champion, GateSettings(min_items=20, min_stop_rate=0, min_refusal_rate=0))
    assert not strict.passed
    assert strict.failures == ["only 5 test items were evaluated, the gate needs at least 20"]
    # The point estimate is worse (-0.4), but with 5 items the interval reaches 0: not significant.
    lenient = decide(candidate, champion, LENIENT)
    assert lenient.a_rate_difference.value == pytest.approx(-0.4)
    assert lenient.a_rate_difference.high >= 0
    assert lenient.passed, lenient.reason


def test_tolerance_admits_a_small_significant_loss() -> None:
    # 15 of 100 items: the champion got A, the candidate C; otherwise identical.
    candidate = outcomes("C" * 15 + "A" * 60 + "B" * 25)
    champion = outcomes("A" * 75 + "B" * 25)
    assert not decide(candidate, champion, LENIENT).passed
    tolerant = LENIENT.model_copy(update={"a_rate_tolerance": 0.3, "c_rate_tolerance": 0.3})
    decision = decide(candidate, champion, tolerant)
    assert decision.passed, decision.reason
    assert -0.3 < decision.a_rate_difference.high < 0


def test_more_wrong_answers_fail_even_with_equal_a_rate() -> None:
    candidate = outcomes("A" * 50 + "C" * 30 + "B" * 20)
    champion = outcomes("A" * 50 + "B" * 50)
    decision = decide(candidate, champion, LENIENT)
    assert not decision.passed
    assert len(decision.failures) == 1
    assert "significantly more wrong answers" in decision.failures[0]


def test_stop_and_refusal_thresholds() -> None:
    settings = GateSettings(min_items=1, min_stop_rate=0.9, min_refusal_rate=0.5)
    champion = outcomes("A" * 20)
    ok = decide(outcomes("A" * 20, stopped=18, unanswerable=4, refused=2), champion, settings)
    assert ok.passed, ok.reason  # exactly at both thresholds
    assert "stop rate 0.900 (95% CI [" in ok.reason and "n=20) >= 0.900" in ok.reason
    short = outcomes("A" * 20, stopped=17, unanswerable=4, refused=1)
    low = decide(short, champion, settings)
    assert not low.passed
    assert len(low.failures) == 2
    # Judged on the observed rates; the reason states their percentile-bootstrap intervals.
    summary = summarize(short, settings)
    stop, refusal = summary.stop_rate, summary.refusal_rate
    assert stop.low < 0.85 < stop.high and refusal.low == 0.0
    assert (f"only 0.850 (95% CI [{stop.low:.3f}, {stop.high:.3f}], n=20) of the candidate's answers ended "
            "with EOS, below the minimum stop rate 0.900" in low.reason)
    assert (f"refused only 0.250 (95% CI [{refusal.low:.3f}, {refusal.high:.3f}], n=4) of the unanswerable "
            "questions, below the minimum refusal rate 0.500" in low.reason)


def test_refusal_rate_unmeasurable_fails_unless_disabled() -> None:
    candidate = champion = outcomes("A" * 20)
    decision = decide(candidate, champion, GateSettings(min_items=1, min_refusal_rate=0.5))
    assert not decision.passed
    assert "no unanswerable questions" in decision.reason
    assert decide(candidate, champion, GateSettings(min_items=1, min_refusal_rate=0.0)).passed


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = [(i * 37 % 101) / 101 for i in range(57)]  # continuous: quantiles move with the resamples
    first = mean_interval(values, GateSettings(seed=7))
    assert first == mean_interval(values, GateSettings(seed=7))
    assert first != mean_interval(values, GateSettings(seed=8))
    halves, thirds = [i % 2 == 0 for i in range(57)], [i % 3 == 0 for i in range(57)]
    paired = paired_difference(halves, thirds, GateSettings())
    assert paired == paired_difference(halves, thirds, GateSettings())
    assert paired.value == pytest.approx(sum(halves) / 57 - sum(thirds) / 57)


def test_percentile_interval_matches_the_normal_approximation() -> None:
    # p = 0.5, n = 400: standard error 0.025, 95% interval about 0.5 +- 0.049.
    interval = mean_interval([float(i % 2) for i in range(400)], GateSettings(bootstrap_samples=4000))
    assert interval.value == 0.5
    assert 0.44 < interval.low < 0.46
    assert 0.54 < interval.high < 0.56
    narrower = mean_interval([float(i % 2) for i in range(400)],
                             GateSettings(bootstrap_samples=4000, confidence=0.8))
    assert interval.low < narrower.low < narrower.high < interval.high


def test_summary_rates_and_empty_groups() -> None:
    summary = summarize(outcomes("AABC", stopped=3, unanswerable=2, refused=1), LENIENT)
    assert summary.a_rate.value == 0.5
    assert summary.c_rate.value == 0.25
    assert summary.stop_rate.value == 0.75
    assert summary.refusal_rate.value == 0.5 and summary.refusal_rate.n == 2
    assert summary.false_refusal_rate.value == 0.0 and summary.false_refusal_rate.n == 2
    assert summarize(outcomes("AB"), LENIENT).refusal_rate is None


def test_undetermined_language_is_neither_a_pass_nor_a_failure() -> None:
    mixed = outcomes("AAAA").model_copy(update={"language_ok": [True, None, False, None]})
    summary = summarize(mixed, LENIENT)
    assert (summary.language_rate.value, summary.language_rate.n) == (0.5, 2)
    assert summary.language_undetermined == 2


def test_paired_difference_refuses_misaligned_outcomes() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([True], [True, False], GateSettings())


def test_preference_summary() -> None:
    summary = summarize_preferences(["candidate", "candidate", "tie", "champion"], GateSettings())
    assert (summary.wins, summary.losses, summary.ties) == (2, 1, 1)
    assert summary.net.value == pytest.approx(0.25)


def test_false_refusal_threshold_and_its_criterion() -> None:
    settings = GateSettings(min_items=1, min_refusal_rate=0.0, max_false_refusal_rate=0.25)
    champion = outcomes("A" * 20)
    at_limit = decide(outcomes("A" * 20, refused=5), champion, settings)  # 5 of 20 answerable refused
    assert at_limit.passed, at_limit.reason
    assert "false refusal rate 0.250 (95% CI [" in at_limit.reason and "<= 0.250" in at_limit.reason
    above = decide(outcomes("A" * 20, refused=6), champion, settings)
    assert not above.passed
    assert above.failed_criteria == ["false_refusal_rate"]
    assert "refused 0.300 (95% CI [" in above.reason and "above the maximum false refusal rate 0.250" in above.reason
    # Refusing unanswerable questions is no false refusal: 4 unanswerable, all refused, none answerable refused.
    assert decide(outcomes("A" * 20, unanswerable=4, refused=4), champion, settings).passed
    # 1 switches the criterion off.
    assert decide(outcomes("A" * 20, refused=20), champion, settings.model_copy(
        update={"max_false_refusal_rate": 1.0})).passed


def test_false_refusal_rate_unmeasurable_fails_closed() -> None:
    only_unanswerable = outcomes("A" * 10, unanswerable=10, refused=10)
    decision = decide(only_unanswerable, only_unanswerable, GateSettings(min_items=1, min_refusal_rate=0.0))
    assert decision.failed_criteria == ["false_refusal_rate"]
    assert "no answerable questions" in decision.reason


def scored(model: ModelOutcomes, chrf: list[float], grounding: list[float | None] | None = None) -> ModelOutcomes:
    grounding = grounding or [0.5] * len(chrf)
    return model.model_copy(update={"reference": [ReferenceScores(chrf=c, token_f1=c, grounding=g)
                                                  for c, g in zip(chrf, grounding)]})


def test_reference_margin_fails_a_significantly_worse_candidate_and_names_the_score() -> None:
    n = 40
    champion = scored(outcomes("A" * n), [0.6 + 0.01 * (i % 5) for i in range(n)])
    candidate = scored(outcomes("A" * n), [0.3 + 0.01 * (i % 7) for i in range(n)])
    margins = ReferenceMargins(chrf=0.05, token_f1=0.05)
    decision = decide(candidate, champion, LENIENT.model_copy(update={"reference_margins": margins}))
    assert not decision.passed
    assert decision.failed_criteria == ["chrf", "token_f1"]  # grounding has no margin: reported, not gated
    difference = decision.reference_differences["chrf"]
    assert difference.value == pytest.approx(sum(0.3 + 0.01 * (i % 7) - 0.6 - 0.01 * (i % 5) for i in range(n)) / n)
    assert difference.high < -0.05
    assert "the candidate is significantly worse on chrF: chrF difference -0.2" in decision.reason
    assert decision.reference_differences["grounding"].value == 0.0
    # A margin wider than the loss lets it pass; without margins the scores are only reported.
    wide = ReferenceMargins(chrf=0.5, token_f1=0.5, grounding=0.0)
    assert decide(candidate, champion, LENIENT.model_copy(update={"reference_margins": wide})).passed
    assert decide(candidate, champion, LENIENT).passed


def test_reference_margin_passes_a_small_or_insignificant_loss() -> None:
    champion = scored(outcomes("A" * 30), [0.5] * 30)
    slightly_worse = scored(outcomes("A" * 30), [0.47] * 30)  # -0.03: significant, but within the margin
    settings = LENIENT.model_copy(update={"reference_margins": ReferenceMargins(chrf=0.05)})
    decision = decide(slightly_worse, champion, settings)
    assert decision.passed, decision.reason
    assert "chrF difference -0.030" in decision.reason
    noisy = scored(outcomes("AAAA"), [0.0, 1.0, 0.0, 1.0])  # differences -0.5, +0.5, ...: mean 0, wide interval
    assert decide(noisy, scored(outcomes("AAAA"), [0.5] * 4), settings).passed


def test_grounding_is_paired_only_where_both_answers_have_it() -> None:
    candidate = scored(outcomes("AAAA"), [0.5] * 4, grounding=[1.0, None, 0.5, 0.0])
    champion = scored(outcomes("AAAA"), [0.5] * 4, grounding=[0.0, 1.0, None, 1.0])
    difference = decide(candidate, champion, LENIENT).reference_differences["grounding"]
    assert (difference.value, difference.n) == (0.0, 2)  # items 0 and 3: +1 and -1
    summary = summarize(candidate, LENIENT)
    assert (summary.reference["grounding"].value, summary.reference["grounding"].n) == (0.5, 3)


def test_reference_margin_without_scores_fails_closed_and_failures_keep_their_order() -> None:
    unscored = outcomes("C" * 30, stopped=0)
    settings = LENIENT.model_copy(update={"min_items": 50, "min_stop_rate": 0.9,
                                          "reference_margins": ReferenceMargins(grounding=0.1)})
    decision = decide(unscored, outcomes("A" * 30), settings)
    assert decision.failed_criteria == ["min_items", "a_rate", "c_rate", "stop_rate", "grounding"]
    assert len(decision.failures) == 5 and "cannot be checked" in decision.failures[-1]
