"""Whether the judge model can be trusted on this test set, measured on the verdicts it just gave.

- Against the reference: the verdict's "A or not" against "chrF of the answer >= REFERENCE_CHRF".
- Against the deterministic checks: "A or not" against "every check passed" (stopped, refusal rule, length,
  language where determined). The verdict is the judge's own grade, before the refusal rule overrides it.
- Position swap: the share of pairs the judge preferred the same way in both orders (pairwise judging only).

Agreement is reported as a rate with its bootstrap interval and as Cohen's kappa, the agreement beyond
chance: a judge that grades everything A agrees with every signal that is mostly "right" yet has kappa 0,
which is what the embedded 135M judge does. The warnings name what
stood out; the gate does not use them (a judge's weakness is reported, not silently corrected).
"""

from collections import Counter
from collections.abc import Sequence

from steps.common.eval_report import Agreement, GateSettings, JudgeReliability
from steps.common.grading import Grade
from steps.judge.gate import Preference, mean_interval

REFERENCE_CHRF = 0.5  # chrF at which an answer shares most of its reference's character n-grams
MIN_KAPPA = 0.2  # below: at most "slight" agreement beyond chance (Landis and Koch)
MIN_SWAP_CONSISTENCY = 0.7
MAX_GRADE_SHARE = 0.9  # one grade for more of the verdicts than this: they hardly separate answers
_MIN_VERDICTS = 5  # fewer usable verdicts: too few to call the judge's grade spread suspicious


def kappa(judge: Sequence[bool], signal: Sequence[bool]) -> float | None:
    """Cohen's kappa of two yes/no raters: 0 when one never varies, None when both give one same answer."""
    n = len(judge)
    if n == 0:
        return None
    observed = sum(j == s for j, s in zip(judge, signal)) / n
    p_judge, p_signal = sum(judge) / n, sum(signal) / n
    expected = p_judge * p_signal + (1 - p_judge) * (1 - p_signal)
    if expected >= 1 - 1e-12:
        return None
    return (observed - expected) / (1 - expected)


def agreement(judge: Sequence[bool], signal: Sequence[bool], settings: GateSettings) -> Agreement:
    if len(judge) != len(signal):
        raise ValueError(f"agreement needs aligned ratings: {len(judge)} vs {len(signal)}")
    return Agreement(rate=mean_interval([float(j == s) for j, s in zip(judge, signal)], settings),
                     kappa=kappa(judge, signal), judge_a=sum(judge), signal_yes=sum(signal), n=len(judge))


def _agreement_warning(name: str, result: Agreement) -> str | None:
    if result.n == 0:
        return None
    if result.kappa is None:
        return (f"the judge's verdicts cannot be compared with {name}: both give the same answer for all "
                f"{result.n} verdicts (judge A {result.judge_a}, {name} right {result.signal_yes})")
    if result.kappa < MIN_KAPPA:
        return (f"the judge's verdicts agree with {name} little beyond chance (kappa {result.kappa:.2f} "
                f"< {MIN_KAPPA}, over {result.n} verdicts)")
    return None


def measure_reliability(grades: Sequence[Grade | None], chrf: Sequence[float], checks_passed: Sequence[bool],
                        orders: Sequence[tuple[Preference, Preference]], settings: GateSettings
                        ) -> JudgeReliability:
    """`grades` (None: unusable verdict), `chrf` and `checks_passed` are aligned, one per answer; `orders`
    holds the two pairwise judgements of every pair judged in both orders."""
    usable = [k for k, grade in enumerate(grades) if grade is not None]
    judge_a = [grades[k] == "A" for k in usable]
    with_reference = agreement(judge_a, [chrf[k] >= REFERENCE_CHRF for k in usable], settings)
    with_checks = agreement(judge_a, [checks_passed[k] for k in usable], settings)
    counts = Counter(grades[k] for k in usable)
    shares = {grade: counts[grade] / len(usable) for grade in ("A", "B", "C")} if usable else {}
    swap = mean_interval([float(first == second) for first, second in orders], settings) if orders else None

    warnings = [w for w in (_agreement_warning("the reference scores", with_reference),
                            _agreement_warning("the deterministic checks", with_checks)) if w]
    if len(usable) >= _MIN_VERDICTS:
        top, count = counts.most_common(1)[0]
        if count / len(usable) > MAX_GRADE_SHARE:
            warnings.insert(0, f"the judge graded {count} of {len(usable)} usable verdicts {top}: its verdicts "
                               "hardly separate good answers from bad ones")
    if swap is not None and swap.value < MIN_SWAP_CONSISTENCY:
        warnings.append(f"the judge preferred the same answer in both orders for only {swap.value:.0%} of "
                        f"{swap.n} pairs (< {MIN_SWAP_CONSISTENCY:.0%}): its preferences follow the position")
    return JudgeReliability(reference_chrf=REFERENCE_CHRF, with_reference=with_reference, with_checks=with_checks,
                            grade_shares=shares, swap_consistency=swap, warnings=warnings)
