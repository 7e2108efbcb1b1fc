"""Deterministic checks on one generated answer: stopped, refused when it should, language, length."""

from pydantic import BaseModel

from steps.common.engines.base import GenerationResult
from steps.common.grading import REFUSALS, is_refusal, refusal_ok
from steps.common.qa_dataset import QAPair
from steps.judge.settings import LengthBounds

# Below this many letters the language of an answer is "undetermined" (language_ok None): counted apart
# and never as a pass. Measured with the detector restricted to _CANDIDATES, on 1-11 word prefixes of the
# demo corpus's sentences: 71% right under 5 letters, 82-90% at 5-19, 95% at 20-24, >= 96% from 30.
_MIN_LETTERS = 20
# Short texts are matched only against these languages (the ones the project writes refusals in) plus the
# test set's own: a one-language test set alone would label every short answer with that language.
_CANDIDATES = tuple(REFUSALS)


class AnswerChecks(BaseModel):
    stopped: bool  # ended with EOS before the token limit
    refused: bool
    refusal_ok: bool  # refused exactly when the question is unanswerable
    language_ok: bool | None  # None: undetermined (too short, or no letters, to tell)
    detected_language: str | None  # None when undetermined
    length_ok: bool

    def all_passed(self) -> bool:
        """Every check passed; an undetermined language counts as neither pass nor failure."""
        return self.stopped and self.refusal_ok and self.length_ok and self.language_ok is not False


class LanguageChecker:
    """The project's seeded detector (ingest's), limited for short texts to the candidate languages."""

    def __init__(self, languages: list[str], seed: int = 0) -> None:
        from steps.common.language import LanguageDetector

        self._detector = LanguageDetector(sorted({*languages, *_CANDIDATES}), seed=seed)

    def check(self, text: str, expected: str) -> tuple[bool | None, str | None]:
        """(answer is in `expected`, the detected language), or (None, None) when undetermined."""
        from steps.common.language import UNKNOWN

        if sum(ch.isalpha() for ch in text) < _MIN_LETTERS:
            return None, None
        detected = self._detector.detect(text)
        if detected == UNKNOWN:
            return None, None
        return detected == expected, detected


def check_answer(item: QAPair, result: GenerationResult, languages: LanguageChecker,
                 length: LengthBounds) -> AnswerChecks:
    if result.finish_reason == "error":  # no answer at all fails every check
        return AnswerChecks(stopped=False, refused=False, refusal_ok=False, language_ok=False,
                            detected_language=None, length_ok=False)
    text = result.text.strip()
    refused = is_refusal(text, item.language)
    language_ok, detected = languages.check(text, item.language)
    return AnswerChecks(
        stopped=result.finish_reason == "stop",
        refused=refused,
        refusal_ok=refusal_ok(item, text),
        language_ok=language_ok,
        detected_language=detected,
        length_ok=length.min_chars <= len(text) <= length.max_chars(item.answer),
    )
