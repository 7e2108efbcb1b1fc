"""Deterministic checks on one generated answer: stopped, refused when it should, language, length."""

from pydantic import BaseModel

from steps.common.engines.base import GenerationResult
from steps.generate_qa.refusals import is_refusal
from steps.judge.dataset import QAItem

# Below this many letters even a detector restricted to the test set's languages guesses: such answers
# pass the language check.
_MIN_LETTERS = 20


class AnswerChecks(BaseModel):
    stopped: bool  # ended with EOS before the token limit
    refused: bool
    refusal_ok: bool  # refused exactly when the question is unanswerable
    language_ok: bool
    detected_language: str | None  # None when the text was too short (or had no letters) to tell
    length_ok: bool


class LanguageChecker:
    """The project's seeded detector (ingest's), limited for short texts to the test set's languages."""

    def __init__(self, languages: list[str], seed: int = 0) -> None:
        from steps.common.language import LanguageDetector

        self._detector = LanguageDetector(sorted(set(languages)), seed=seed)

    def check(self, text: str, expected: str) -> tuple[bool, str | None]:
        """(answer is in `expected` or undecidable, the detected language or None if undecidable)."""
        from steps.common.language import UNKNOWN

        if sum(ch.isalpha() for ch in text) < _MIN_LETTERS:
            return True, None
        detected = self._detector.detect(text)
        if detected == UNKNOWN:
            return True, None
        return detected == expected, detected


def check_answer(item: QAItem, result: GenerationResult, languages: LanguageChecker,
                 min_chars: int, max_chars: int) -> AnswerChecks:
    if result.finish_reason == "error":  # no answer at all fails every check
        return AnswerChecks(stopped=False, refused=False, refusal_ok=False, language_ok=False,
                            detected_language=None, length_ok=False)
    text = result.text.strip()
    refused = is_refusal(text, item.language)
    language_ok, detected = languages.check(text, item.language)
    return AnswerChecks(
        stopped=result.finish_reason == "stop",
        refused=refused,
        refusal_ok=refused != item.answerable,
        language_ok=language_ok,
        detected_language=detected,
        length_ok=min_chars <= len(text) <= max_chars,
    )
