"""The judge's reliability: agreement with the reference scores and the checks, and position-swap consistency."""

import pytest

from steps.common.eval_report import GateSettings
from steps.judge.reliability import REFERENCE_CHRF, agreement, kappa, measure_reliability

SETTINGS = GateSettings(bootstrap_samples=200)


def test_kappa_by_hand() -> None:
    # observed 3/4; P(judge yes) 1/2, P(signal yes) 1/4: chance 1/2*1/4 + 1/2*3/4 = 1/2; kappa (3/4-1/2)/(1/2)
    assert kappa([True, True, False, False], [True, False, False, False]) == pytest.approx(0.5)
    assert kappa([True, False], [True, False]) == pytest.approx(1.0)
    assert kappa([True, False], [False, True]) == pytest.approx(-1.0)
    assert kappa([True, True, True], [True, False, True]) == 0.0  # the judge never varies: no skill
    assert kappa([True, True], [True, True]) is None  # neither varies: chance agreement is 1
    assert kappa([], []) is None


def test_agreement_counts_and_interval() -> None:
    result = agreement([True, True, False, False], [True, False, False, False], SETTINGS)
    assert (result.judge_a, result.signal_yes, result.n) == (2, 1, 4)
    assert result.rate.value == 0.75 and result.kappa == pytest.approx(0.5)
    with pytest.raises(ValueError, match="aligned"):
        agreement([True], [], SETTINGS)


def test_a_judge_that_grades_everything_a_is_flagged() -> None:
    # The embedded judge's pattern: A for all, whether the answer matches the reference or not.
    n = 12
    chrf = [0.9 if i % 2 else 0.1 for i in range(n)]
    reliability = measure_reliability(["A"] * n, chrf, [i % 3 != 0 for i in range(n)], [], SETTINGS)
    assert reliability.with_reference.kappa == 0.0 and reliability.with_reference.rate.value == 0.5
    assert reliability.grade_shares == {"A": 1.0, "B": 0.0, "C": 0.0}
    assert reliability.swap_consistency is None  # pairwise judging off
    assert reliability.warnings[0] == ("the judge graded 12 of 12 usable verdicts A: its verdicts hardly "
                                       "separate good answers from bad ones")
    assert reliability.warnings[1] == ("the judge's verdicts agree with the reference scores little beyond "
                                       "chance (kappa 0.00 < 0.2, over 12 verdicts)")
    same = measure_reliability(["A"] * 3, [0.9] * 3, [True] * 3, [], SETTINGS)
    assert same.with_reference.kappa is None
    assert same.warnings == [
        ("the judge's verdicts cannot be compared with the reference scores: both give the same answer for all 3 "
         "verdicts (judge A 3, the reference scores right 3)"),
        ("the judge's verdicts cannot be compared with the deterministic checks: both give the same answer for "
         "all 3 verdicts (judge A 3, the deterministic checks right 3)")]


def test_a_judge_that_follows_the_reference_is_trusted() -> None:
    chrf = [0.9, 0.8, 0.2, 0.1, 0.7, 0.05]
    grades = ["A" if c >= REFERENCE_CHRF else "C" for c in chrf]
    checks = [c >= REFERENCE_CHRF for c in chrf]
    orders = [("candidate", "candidate"), ("champion", "champion"), ("tie", "tie")]
    reliability = measure_reliability(grades, chrf, checks, orders, SETTINGS)
    assert reliability.with_reference.kappa == pytest.approx(1.0)
    assert reliability.with_checks.kappa == pytest.approx(1.0)
    assert reliability.swap_consistency.value == 1.0
    assert reliability.warnings == []


def test_unusable_verdicts_are_left_out_and_position_bias_is_flagged() -> None:
    reliability = measure_reliability(["A", None, "C", "B"], [0.9, 0.9, 0.1, 0.1], [True, True, False, False],
                                      [("candidate", "champion"), ("champion", "candidate"),
                                       ("candidate", "candidate")], SETTINGS)
    assert reliability.with_reference.n == 3 and reliability.with_reference.rate.value == 1.0
    assert reliability.swap_consistency.value == pytest.approx(1 / 3)
    assert reliability.warnings == [("the judge preferred the same answer in both orders for only 33% of 3 pairs "
                                     "(< 70%): its preferences follow the position")]
