"""The evaluation report the judge publishes (eval_metrics.json) and promote reads: one model for both sides."""

from pathlib import Path

from pydantic import BaseModel, Field

from steps.common.grading import Role
from steps.common.reference_scores import ScoreName

METRICS_FILE = "eval_metrics.json"


class ReferenceMargins(BaseModel):
    """How far (score points, 0..1) the candidate's reference scores may be significantly below the
    champion's: the gate fails when the paired interval of candidate - champion lies entirely below -margin.
    None leaves the score out of the gate (it is reported all the same)."""

    model_config = {"extra": "forbid"}
    chrf: float | None = Field(None, ge=0.0, le=1.0)
    token_f1: float | None = Field(None, ge=0.0, le=1.0)
    grounding: float | None = Field(None, ge=0.0, le=1.0)

    def margin(self, name: ScoreName) -> float | None:
        return getattr(self, name)


class GateSettings(BaseModel):
    """The promotion gate (the exact rule is in steps/judge/gate.py)."""

    model_config = {"extra": "forbid"}
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    bootstrap_samples: int = Field(2000, ge=100, le=100_000)
    seed: int = 0
    # Tolerated, statistically significant degradation against the champion (rate points, 0..1).
    a_rate_tolerance: float = Field(0.0, ge=0.0, le=1.0)
    c_rate_tolerance: float = Field(0.0, ge=0.0, le=1.0)
    # With few items every interval is wide and "not significantly worse" proves nothing: fail closed.
    min_items: int = Field(20, ge=1)
    min_stop_rate: float = Field(0.9, ge=0.0, le=1.0)
    # Share of unanswerable questions the candidate must refuse; 0 disables the criterion.
    min_refusal_rate: float = Field(0.5, ge=0.0, le=1.0)
    # Largest share of answerable questions the candidate may refuse; 1 disables the criterion.
    max_false_refusal_rate: float = Field(0.25, ge=0.0, le=1.0)
    reference_margins: ReferenceMargins = Field(default_factory=ReferenceMargins)


class Interval(BaseModel):
    """A point estimate with its percentile-bootstrap confidence interval."""

    value: float
    low: float
    high: float
    n: int


class ModelSummary(BaseModel):
    n: int
    a_rate: Interval | None
    b_rate: Interval | None
    c_rate: Interval | None
    stop_rate: Interval | None
    refusal_rate: Interval | None  # over unanswerable questions: refused (good)
    false_refusal_rate: Interval | None  # over answerable questions: refused (bad)
    language_rate: Interval | None  # over the answers whose language could be determined
    language_undetermined: int  # answers too short to tell: neither a pass nor a failure
    length_rate: Interval | None
    # Mean reference score (steps/common/reference_scores.py) per score; grounding over the answers it applies to.
    reference: dict[ScoreName, Interval | None] = Field(default_factory=dict)


class GateDecision(BaseModel):
    passed: bool
    reason: str
    failures: list[str]
    # The criteria behind `failures`, one per failure: min_items, a_rate, c_rate, stop_rate, refusal_rate,
    # false_refusal_rate, or a reference score's name (chrf, token_f1, grounding).
    failed_criteria: list[str] = Field(default_factory=list)
    n: int
    confidence: float
    a_rate_difference: Interval | None  # candidate - champion, paired over items
    c_rate_difference: Interval | None
    # Candidate - champion per reference score, paired over the items where both have the score.
    reference_differences: dict[ScoreName, Interval | None] = Field(default_factory=dict)


class PreferenceSummary(BaseModel):
    wins: int
    losses: int
    ties: int
    net: Interval | None  # mean of +1 (candidate preferred), -1 (champion preferred), 0 (tie)


class Agreement(BaseModel):
    """How often the judge's verdict (A or not) agrees with another yes/no signal on the same answers."""

    rate: Interval | None  # share of usable verdicts that agree
    kappa: float | None  # Cohen's kappa: agreement beyond chance (0 when one side never varies); None
    # when both sides give one and the same answer throughout
    judge_a: int  # usable verdicts graded A
    signal_yes: int  # answers the other signal calls right
    n: int


class JudgeReliability(BaseModel):
    """Whether the judge model's verdicts can be trusted on this test set (steps/judge/reliability.py)."""

    reference_chrf: float  # an answer with chrF at or above this counts as right by the reference
    with_reference: Agreement  # verdict A vs chrF >= reference_chrf
    with_checks: Agreement  # verdict A vs every deterministic check passed
    grade_shares: dict[str, float]  # share of usable verdicts per grade, before the refusal rule
    swap_consistency: Interval | None  # same pair, both orders, same preference; None: pairwise off
    warnings: list[str]  # why the verdicts should not be trusted; empty when nothing stood out


class EvalMetrics(BaseModel):
    gate: GateDecision
    thresholds: GateSettings  # the gate settings the decision used
    candidate: ModelSummary
    champion: ModelSummary
    champion_version: str | None  # None: compared against the base model (no champion yet)
    n_items: int
    unusable_verdicts: dict[Role, int]  # counted as C for the candidate, A for the champion
    generation_errors: dict[Role, int]
    pairwise: PreferenceSummary | None
    timings_s: dict[str, float]
    judge_reliability: JudgeReliability | None = None  # None in reports written before it was measured

    @property
    def champion_label(self) -> str:
        return f"champion v{self.champion_version}" if self.champion_version else "base model"


def write_eval_report(directory: Path, report: EvalMetrics) -> None:
    (directory / METRICS_FILE).write_text(report.model_dump_json(indent=1))


def read_eval_report(directory: Path, uri: str) -> EvalMetrics:
    """The report in a materialized judge artifact; a missing or invalid file is a clear error."""
    path = directory / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"judge report {uri} has no {METRICS_FILE}")
    try:
        return EvalMetrics.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{uri}/{METRICS_FILE} is not a valid judge report: {exc}") from exc
