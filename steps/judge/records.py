"""What the judge step records: one row per test item (items.jsonl) and the metrics (eval_metrics.json)."""

from typing import Literal

from pydantic import BaseModel

from steps.common.eval_report import EvalMetrics, GateSettings, JudgeReliability
from steps.common.grading import Grade, Role, Verdict
from steps.common.reference_scores import ReferenceScores
from steps.judge.checks import AnswerChecks
from steps.judge.gate import ModelOutcomes, Preference, decide, summarize, summarize_preferences
from steps.judge.reliability import measure_reliability


class AnswerRecord(BaseModel):
    text: str
    finish_reason: Literal["stop", "length", "error"]
    completion_tokens: int
    checks: AnswerChecks
    scores: ReferenceScores  # against the item's reference answer and chunk
    verdict: Verdict
    grade: Grade  # what the statistics count (`Verdict.counted_as`)


class ItemRecord(BaseModel):
    index: int
    question: str
    reference: str
    type: str
    language: str
    answerable: bool
    doc_id: str
    chunk_id: str
    candidate: AnswerRecord
    champion: AnswerRecord
    preference: Preference | None = None  # None when pairwise judging is off
    # The two pairwise judgements (candidate shown first, champion shown first); None when not judged.
    preference_orders: tuple[Preference, Preference] | None = None

    def answer(self, role: Role) -> AnswerRecord:
        return self.candidate if role == "candidate" else self.champion


def outcomes(records: list[ItemRecord], role: Role) -> ModelOutcomes:
    answers = [r.answer(role) for r in records]
    return ModelOutcomes(
        grades=[a.grade for a in answers],
        stopped=[a.checks.stopped for a in answers],
        refused=[a.checks.refused for a in answers],
        answerable=[r.answerable for r in records],
        language_ok=[a.checks.language_ok for a in answers],
        length_ok=[a.checks.length_ok for a in answers],
        reference=[a.scores for a in answers],
    )


def judge_reliability(records: list[ItemRecord], settings: GateSettings) -> JudgeReliability:
    answers = [r.answer(role) for r in records for role in ("candidate", "champion")]
    return measure_reliability([a.verdict.grade for a in answers], [a.scores.chrf for a in answers],
                               [a.checks.all_passed() for a in answers],
                               [r.preference_orders for r in records if r.preference_orders is not None],
                               settings)


def measure(records: list[ItemRecord], champion_version: str | None, settings: GateSettings,
            timings_s: dict[str, float]) -> EvalMetrics:
    """Aggregate the per-item records and apply the gate."""
    candidate, champion = outcomes(records, "candidate"), outcomes(records, "champion")
    roles: tuple[Role, ...] = ("candidate", "champion")
    preferences = [r.preference for r in records if r.preference is not None]
    return EvalMetrics(
        gate=decide(candidate, champion, settings),
        thresholds=settings,
        candidate=summarize(candidate, settings),
        champion=summarize(champion, settings),
        champion_version=champion_version,
        n_items=len(records),
        unusable_verdicts={role: sum(r.answer(role).verdict.grade is None for r in records)
                           for role in roles},
        generation_errors={role: sum(r.answer(role).finish_reason == "error" for r in records)
                           for role in roles},
        pairwise=summarize_preferences(preferences, settings) if preferences else None,
        timings_s=timings_s,
        judge_reliability=judge_reliability(records, settings),
    )
