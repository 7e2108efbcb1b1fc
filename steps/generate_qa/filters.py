"""The quality filter: every generated pair is accepted or rejected with one reason.

Checks run cheapest first: form and topic of the question, the answer (answerable pairs) or that the
chunk does not answer the question (unanswerable ones), language, then dedup last so that a rejected
pair never blocks a later, valid pair with the same question.
"""

from enum import StrEnum

from steps.common.grading import is_refusal
from steps.common.qa_dataset import QAPair
from steps.common.text import normalise, words
from steps.generate_qa.examples import markers
from steps.generate_qa.settings import GenerateQASettings

# Below this many letters a language guess is noise: such questions pass the language check.
MIN_LANGUAGE_LETTERS = 20
# A question holding this share of its answer's distinct words gives the answer away.
MAX_ANSWER_IN_QUESTION = 0.8
# Words at least this long count as substantial for the topic check (shorter ones are mostly function words).
TOPIC_WORD_CHARS = 5
# Words that ask rather than name something: an "unanswerable" question needs a substantial word besides
# these that its chunk lacks, else the chunk probably answers it.
QUESTION_WORDS = frozenset({
    "which", "where", "whose", "there", "about",
    "welche", "welcher", "welches", "welchen", "warum", "wieviel", "wieviele", "woher", "wohin",
    "quelle", "quels", "quelles", "combien", "pourquoi", "comment",
    "cuánto", "cuánta", "cuántos", "cuántas", "cuándo", "dónde", "cuáles", "quién", "quiénes",
    "quanto", "quanta", "quanti", "quante", "quando", "perché", "quale", "quali",
    "welke", "waarom", "wanneer", "hoeveel",
})


class Reason(StrEnum):
    GENERATION_ERROR = "generation_error"  # the engine returned an error for the request
    TRUNCATED = "truncated"  # the token budget ran out before the JSON closed
    INVALID_JSON = "invalid_json"
    SCHEMA_INVALID = "schema_invalid"  # JSON, but not what the request's schema allows (keys, bounds)
    QUESTION_LENGTH = "question_length"
    ANSWER_LENGTH = "answer_length"
    NOT_A_QUESTION = "not_a_question"  # no question mark
    COPIED_EXAMPLE = "copied_example"  # asks about the few-shot example's topic, not the chunk's
    OFF_TOPIC = "off_topic"  # shares no substantial word with the chunk ("What is the answer?")
    ANSWER_IS_REFUSAL = "answer_is_refusal"  # an answerable pair whose answer refuses
    ANSWERABLE_FROM_CHUNK = "answerable_from_chunk"  # an "unanswerable" question asking only what the chunk says
    NOT_GROUNDED = "not_grounded"  # too few answer words occur in the chunk
    ANSWER_IN_QUESTION = "answer_in_question"  # the question restates its answer (a copied sentence)
    WRONG_LANGUAGE = "wrong_language"
    DUPLICATE = "duplicate"  # same normalised question as an accepted pair


def grounding(answer: str, context: str) -> float:
    """Share of the answer's words (with repeats) that occur in the context; 0 for an empty answer."""
    answer_words = words(answer)
    if not answer_words:
        return 0.0
    vocabulary = set(words(context))
    return sum(word in vocabulary for word in answer_words) / len(answer_words)


class QualityFilter:
    """Stateful across one run: remembers accepted questions for dedup."""

    def __init__(self, settings: GenerateQASettings, languages: list[str], seed: int = 0) -> None:
        from steps.common.language import LanguageDetector

        self.settings = settings
        self._detector = LanguageDetector(sorted(set(languages)), seed=seed)
        self._seen: set[str] = set()

    def check(self, pair: QAPair) -> Reason | None:
        """None if `pair` is accepted (and remembered for dedup), else why not."""
        reason = self._reason(pair)
        if reason is None:
            self._seen.add(normalise(pair.question))
        return reason

    def _reason(self, pair: QAPair) -> Reason | None:
        s = self.settings
        question, answer = pair.question.strip(), pair.answer.strip()
        if not s.question_min_chars <= len(question) <= s.question_max_chars:
            return Reason.QUESTION_LENGTH
        if "?" not in question and "¿" not in question:
            return Reason.NOT_A_QUESTION
        question_words, context_words = set(words(question)), set(words(pair.context))
        if (question_words & markers(pair.language)) - context_words:
            return Reason.COPIED_EXAMPLE
        if not any(len(word) >= TOPIC_WORD_CHARS for word in question_words & context_words):
            return Reason.OFF_TOPIC
        if pair.answerable:
            if not s.answer_min_chars <= len(answer) <= s.answer_max_chars:
                return Reason.ANSWER_LENGTH
            if is_refusal(answer, pair.language):
                return Reason.ANSWER_IS_REFUSAL
            if grounding(answer, pair.context) < s.grounding_threshold:
                return Reason.NOT_GROUNDED
            if _share_in(set(words(answer)), question) >= MAX_ANSWER_IN_QUESTION:
                return Reason.ANSWER_IN_QUESTION
        elif not unknown_to(question_words, context_words):
            return Reason.ANSWERABLE_FROM_CHUNK
        if not self.language_matches(question, pair.language):
            return Reason.WRONG_LANGUAGE
        if normalise(question) in self._seen:
            return Reason.DUPLICATE
        return None

    def language_matches(self, text: str, expected: str) -> bool:
        """Tolerant: a text too short to tell, or one the detector cannot place, passes."""
        from steps.common.language import UNKNOWN

        if sum(ch.isalpha() for ch in text) < MIN_LANGUAGE_LETTERS:
            return True
        detected = self._detector.detect(text)
        return detected in (UNKNOWN, expected)


def unknown_to(question_words: set[str], context_words: set[str]) -> set[str]:
    """The question's substantial words that no word of the context shares a stem with: what the question
    asks about that the context does not mention. Stems are crude prefixes (all but the last 3 letters, at
    least 5), so "reported" meets "report" and inflections do not count as new."""
    found = set()
    for word in question_words:
        if len(word) < TOPIC_WORD_CHARS or word in QUESTION_WORDS:
            continue
        stem = word[:max(TOPIC_WORD_CHARS, len(word) - 3)]
        if not any(other.startswith(stem) or word.startswith(other[:max(TOPIC_WORD_CHARS, len(other) - 3)])
                   for other in context_words if len(other) >= TOPIC_WORD_CHARS):
            found.add(word)
    return found


def _share_in(distinct_words: set[str], text: str) -> float:
    return len(distinct_words & set(words(text))) / len(distinct_words) if distinct_words else 0.0
