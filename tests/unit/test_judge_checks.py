"""Deterministic answer checks with the real refusal detector and language detector."""

import pytest

from steps.common.engines.base import GenerationResult
from steps.common.grading import REFUSALS
from steps.common.qa_dataset import QAPair
from steps.judge.checks import LanguageChecker, check_answer
from steps.judge.settings import LengthBounds

GERMAN = "Die Kündigungsfrist beträgt vier Wochen zum Monatsende, so steht es im Arbeitsvertrag."
ENGLISH = "The notice period is four weeks to the end of the month, as the employment contract says."


REFERENCE = "The notice period is four weeks."  # 32 characters
BOUNDS = LengthBounds(min_chars=2, max_ratio=2.0, slack_chars=10)  # at most 2 * 32 + 10 = 74 characters


@pytest.fixture(scope="module")
def languages() -> LanguageChecker:
    return LanguageChecker(["en", "de"])


def item(language: str = "en", answerable: bool = True, reference: str = REFERENCE) -> QAPair:
    return QAPair(question="q", answer=reference, type="factual", language=language, chunk_id="c",
                  doc_id="d", answerable=answerable, context="ctx")


def check(text: str, languages: LanguageChecker, finish: str = "stop", **kwargs):
    return check_answer(item(**kwargs), GenerationResult(text=text, finish_reason=finish), languages, BOUNDS)


def test_stop_versus_token_limit(languages: LanguageChecker) -> None:
    assert check(ENGLISH, languages).stopped
    cut = check(ENGLISH, languages, finish="length", reference=ENGLISH)
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
    assert wrong.language_ok is False and wrong.detected_language == "en"
    short = check("Vier Wochen.", languages, language="en")  # too short to tell: undetermined, not a pass
    assert short.language_ok is None and short.detected_language is None
    assert check("42 / 7 = 6", languages).language_ok is None  # no letters to go on


def test_short_answers_are_matched_beyond_the_test_set_languages() -> None:
    # An English-only test set: a French answer of 20-59 letters (where the detector is restricted to
    # candidate languages) is still recognised as French, not forced to the only test-set language.
    english_only = LanguageChecker(["en"])
    french = "Le préavis est de quatre semaines."
    assert 20 <= sum(ch.isalpha() for ch in french) < 60
    ok, detected = english_only.check(french, "en")
    assert (ok, detected) == (False, "fr")


def test_length_is_bounded_relative_to_the_reference(languages: LanguageChecker) -> None:
    assert BOUNDS.max_chars(REFERENCE) == 74
    assert not check("x", languages).length_ok  # below min_chars
    assert check("y" * 74, languages).length_ok
    assert not check("y" * 75, languages).length_ok
    assert check("  ok  ", languages).length_ok  # measured without surrounding whitespace
    # The same 100-character answer is fine for a long reference and rambling for a short one.
    assert check("z" * 100, languages, reference="r" * 60).length_ok
    assert not check("z" * 100, languages, reference="Four weeks.").length_ok


def test_a_generation_error_fails_every_check(languages: LanguageChecker) -> None:
    failed = GenerationResult(text="", finish_reason="error", error="boom")
    checks = check_answer(item(answerable=False), failed, languages, LengthBounds(min_chars=0))
    assert not any(checks.model_dump(exclude={"detected_language"}).values())


def test_unknown_test_set_language_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="not known to langdetect"):
        LanguageChecker(["en", "xx"])
