"""Deterministic answer checks with the real refusal detector and language detector."""

import pytest

from steps.common.engines.base import GenerationResult
from steps.generate_qa.refusals import REFUSALS
from steps.judge.checks import LanguageChecker, check_answer
from steps.judge.dataset import QAItem

GERMAN = "Die Kündigungsfrist beträgt vier Wochen zum Monatsende, so steht es im Arbeitsvertrag."
ENGLISH = "The notice period is four weeks to the end of the month, as the employment contract says."


@pytest.fixture(scope="module")
def languages() -> LanguageChecker:
    return LanguageChecker(["en", "de"])


def item(language: str = "en", answerable: bool = True) -> QAItem:
    return QAItem(question="q", answer="a", type="factual", language=language, chunk_id="c", doc_id="d",
                  answerable=answerable, context="ctx")


def check(text: str, languages: LanguageChecker, finish: str = "stop", **kwargs):
    return check_answer(item(**kwargs), GenerationResult(text=text, finish_reason=finish), languages,
                        min_chars=2, max_chars=200)


def test_stop_versus_token_limit(languages: LanguageChecker) -> None:
    assert check(ENGLISH, languages).stopped
    cut = check(ENGLISH, languages, finish="length")
    assert not cut.stopped and cut.length_ok and cut.language_ok


def test_refusals_are_right_only_for_unanswerable_questions(languages: LanguageChecker) -> None:
    refusal = REFUSALS["en"]
    good = check(refusal, languages, answerable=False)
    assert good.refused and good.refusal_ok
    over = check(refusal, languages, answerable=True)
    assert over.refused and not over.refusal_ok
    invented = check(ENGLISH, languages, answerable=False)
    assert not invented.refused and not invented.refusal_ok
    assert check(ENGLISH, languages).refusal_ok


def test_language(languages: LanguageChecker) -> None:
    german = check(GERMAN, languages, language="de")
    assert german.language_ok and german.detected_language == "de"
    wrong = check(ENGLISH, languages, language="de")
    assert not wrong.language_ok and wrong.detected_language == "en"
    short = check("Vier Wochen.", languages, language="en")  # too short to tell: tolerated
    assert short.language_ok and short.detected_language is None


def test_length_bounds(languages: LanguageChecker) -> None:
    assert not check("x", languages).length_ok
    assert not check("x" * 201, languages).length_ok
    assert check("  ok  ", languages).length_ok  # measured without surrounding whitespace


def test_a_generation_error_fails_every_check(languages: LanguageChecker) -> None:
    failed = GenerationResult(text="", finish_reason="error", error="boom")
    checks = check_answer(item(answerable=False), failed, languages, min_chars=0, max_chars=200)
    assert not any(checks.model_dump(exclude={"detected_language"}).values())


def test_unknown_test_set_language_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="not known to langdetect"):
        LanguageChecker(["en", "xx"])
