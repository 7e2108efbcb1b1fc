"""The evaluation loop against a scripted engine: identical requests, fail-closed errors, both orders."""

import json
from pathlib import Path

import pytest

from steps.common.engines.base import GenerationRequest, GenerationResult
from steps.common.grading import REFUSALS, Verdict
from steps.common.qa_dataset import QAPair
from steps.judge.evaluate import evaluate
from steps.judge.settings import JudgeSettings


class ScriptedEngine:
    """Answers by adapter; judges by the answer text in the prompt; records every request."""

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.requests += requests
        return [self._one(r) for r in requests]

    def _one(self, request: GenerationRequest) -> GenerationResult:
        prompt = request.messages[-1]["content"]
        if request.json_schema is None:  # an answer
            if request.adapter == "cand" and "broken" in prompt:
                return GenerationResult(text="", finish_reason="error", error="adapter failed")
            return GenerationResult(text=f"{request.adapter or 'base'} says four weeks", finish_reason="stop")
        if "preference" in request.json_schema["properties"]:
            first = prompt.split("<answer_1>")[1].split("</answer_1>")[0]
            return GenerationResult(text=json.dumps({"preference": "1" if "cand" in first else "2",
                                                     "rationale": "r"}), finish_reason="stop")
        answer = prompt.split("<answer>")[1]
        if "cand" in answer:
            return GenerationResult(text='{"verdict": "A", "rationale": "good"}', finish_reason="stop")
        return GenerationResult(text='{"verdict": "B", "rat', finish_reason="length")  # unusable

    def close(self) -> None:
        pass


def items() -> list[QAPair]:
    return [QAPair(question=q, answer="Four weeks.", type="factual", language="en", chunk_id=f"c{i}",
                   doc_id="d", answerable=True, context="The notice period is four weeks.")
            for i, q in enumerate(["How long is the notice?", "broken question", "Notice period?"])]


def test_evaluate_records_fail_closed_outcomes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    progress = tmp_path / "progress"
    monkeypatch.setenv("ARGO_PROGRESS_FILE", str(progress))
    engine = ScriptedEngine()
    settings = JudgeSettings(pairwise=True, max_new_tokens=33)
    records, timings = evaluate(items(), engine, engine, {"candidate": "cand", "champion": None}, settings)

    answers = [r for r in engine.requests if r.json_schema is None]
    candidate = [r for r in answers if r.adapter == "cand"]
    champion = [r for r in answers if r.adapter is None]
    assert len(candidate) == len(champion) == 3
    for c, h in zip(candidate, champion):  # identical decoding: only the adapter differs
        assert c.model_copy(update={"adapter": None}) == h
        assert c.messages == [{"role": "user", "content": c.messages[0]["content"]}]
        assert c.max_new_tokens == 33

    ok, broken = records[0], records[1]
    assert (ok.candidate.grade, ok.candidate.verdict.rationale) == ("A", "good")
    # The champion's verdict was cut off: unusable, counted as A (never helps the candidate).
    assert ok.champion.verdict.grade is None and ok.champion.grade == "A"
    assert "cut off" in ok.champion.verdict.error
    assert ok.preference == "candidate"  # preferred in both orders
    # The candidate failed to generate: not judged, graded C, the pair goes to the champion.
    assert broken.candidate.finish_reason == "error" and broken.candidate.grade == "C"
    assert not broken.candidate.checks.stopped
    assert broken.preference == "champion"
    judged = [r for r in engine.requests if r.json_schema is not None]
    assert len(judged) == 5 + 4  # 6 answers minus the failed one; 2 orders for the 2 complete pairs
    assert all(r.adapter is None for r in judged)
    assert progress.read_text() == "18/18"
    assert set(timings) == {"generation", "judging"}


class LenientJudge:
    """Answers with the refusal sentence when the adapter is set, else with a fact; grades everything A."""

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [GenerationResult(text='{"verdict": "A", "rationale": "fine"}', finish_reason="stop")
                if r.json_schema is not None else
                GenerationResult(text=REFUSALS["en"] if r.adapter else "It is four weeks.", finish_reason="stop")
                for r in requests]

    def close(self) -> None:
        pass


def test_the_refusal_check_decides_the_rubrics_refusal_rule_over_the_judge() -> None:
    """The candidate refuses everything, the champion answers everything, the judge grades all A: the
    refusal of the answerable question and the answer to the unanswerable one count as C."""
    answerable, unanswerable = items()[0], items()[2].model_copy(update={"answerable": False,
                                                                        "answer": REFUSALS["en"]})
    engine = LenientJudge()
    records, _ = evaluate([answerable, unanswerable], engine, engine, {"candidate": "cand", "champion": None},
                          JudgeSettings())
    assert all(r.candidate.verdict.grade == r.champion.verdict.grade == "A" for r in records)  # the judge's
    assert (records[0].candidate.grade, records[0].champion.grade) == ("C", "A")
    assert (records[1].candidate.grade, records[1].champion.grade) == ("A", "C")


def test_an_unusable_verdict_still_fails_closed_whatever_the_refusal_check_says() -> None:
    unusable = Verdict(grade=None, error="cut off")
    assert unusable.graded("champion", refusal_ok=False) == "A"  # never helps the candidate
    assert unusable.graded("candidate", refusal_ok=True) == "C"
    assert Verdict(grade="B").graded("candidate", refusal_ok=True) == "B"
