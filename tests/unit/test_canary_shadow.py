"""The canary's shadow grading follows the judge step's rules: the refusal check decides the refusal rule."""

import pytest

from steps.canary.settings import ShadowSettings
from steps.canary.shadow import judge_batch
from steps.common.engines.base import GenerationRequest, GenerationResult
from steps.common.grading import REFUSALS
from steps.common.qa_dataset import QAPair


class RefusingChallenger:
    """The challenger adapter refuses everything, the champion answers; the judge grades every answer A."""

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [GenerationResult(text='{"verdict": "A", "rationale": "fine"}', finish_reason="stop")
                if r.json_schema is not None else
                GenerationResult(text=REFUSALS["en"] if r.adapter == "handbook-v2" else "Four weeks.",
                                 finish_reason="stop")
                for r in requests]

    def close(self) -> None:
        pass


def _item(answerable: bool) -> QAPair:
    return QAPair(question="How long is the notice period?", answer="Four weeks." if answerable else REFUSALS["en"],
                  type="factual", language="en", chunk_id="c", doc_id="d", answerable=answerable,
                  context="The notice period is four weeks.")


def test_shadow_grades_a_wrong_refusal_and_an_answered_unanswerable_question_c() -> None:
    engine = RefusingChallenger()
    items = [_item(answerable=True), _item(answerable=False)]
    graded = judge_batch(0, range(2), items, engine, engine,
                         {"challenger": "handbook-v2", "champion": "handbook-v1"}, ShadowSettings())
    assert [(g.challenger, g.champion) for g in graded] == [("C", "A"), ("A", "C")]


def test_shadow_items_carry_reference_scores_for_both_answers() -> None:
    engine = RefusingChallenger()
    graded = judge_batch(0, range(2), [_item(answerable=True), _item(answerable=False)], engine, engine,
                         {"challenger": "handbook-v2", "champion": "handbook-v1"}, ShadowSettings())
    answered = graded[0]
    assert answered.champion_scores.chrf == pytest.approx(1.0) and answered.champion_scores.token_f1 == 1.0
    assert answered.champion_scores.grounding == 1.0  # "four weeks" is in the chunk
    assert answered.challenger_scores.token_f1 == 0.0 and answered.challenger_scores.grounding is None  # refused
    refused_right = graded[1]  # unanswerable: the challenger's refusal is the reference sentence
    assert refused_right.challenger_scores.chrf == pytest.approx(1.0)
