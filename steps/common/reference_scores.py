"""Reference scores: deterministic scores of one answer against its reference answer and its chunk, shared
by the judge step and the canary's shadow set. All three lie in 0..1, higher is better.

- chrF: sacrebleu's sentence chrF (character 6-grams, word order 0, beta 2; case-sensitive, as standard),
  divided by 100. Character n-grams see through German compounds ("Kündigungsfrist" shares most of its
  n-grams with "Frist der Kündigung") and French elisions, where whole-word scores do not.
- token F1: the harmonic mean of token precision and recall against the reference, tokens counted with
  repeats (bag of tokens, as SQuAD's F1). Chosen over ROUGE-L because the answers are one or two sentences:
  word order adds little there, and an order-free score does not punish a reordered German clause.
- grounding: the share of the answer's content tokens (not a function word of the item's language or of
  English, steps/common/function_words.py) that occur in the chunk. None for a refusal (it claims nothing)
  and for an answer without content tokens: such an answer is neither grounded nor ungrounded.

Tokens (`tokens`): NFKC, casefolded (so ß matches ss), maximal runs of Unicode letters and digits. Every
other character separates, apostrophes included, so elisions split: "l'échéance" -> "l", "échéance",
"dell'anno" -> "dell", "anno", and the word after an elision matches its unelided form. German compounds stay
one token: token F1 cannot match "Kündigungsfrist" with "Frist", which is what chrF is for.
"""

import re
import unicodedata
from collections import Counter
from functools import cache
from typing import Literal

from pydantic import BaseModel

from steps.common.function_words import function_words
from steps.common.grading import is_refusal

ScoreName = Literal["chrf", "token_f1", "grounding"]
SCORE_NAMES: tuple[ScoreName, ...] = ("chrf", "token_f1", "grounding")
SCORE_LABELS: dict[ScoreName, str] = {"chrf": "chrF", "token_f1": "token F1", "grounding": "grounding"}
_TOKEN = re.compile(r"[^\W_]+")  # letters and digits of any script; underscores and apostrophes separate


class ReferenceScores(BaseModel):
    chrf: float
    token_f1: float
    grounding: float | None  # None: a refusal, or no content tokens to check

    def score(self, name: ScoreName) -> float | None:
        return getattr(self, name)


def tokens(text: str) -> list[str]:
    """The answer's tokens for token F1 and grounding (see the module docstring)."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


@cache
def _chrf():
    from sacrebleu.metrics import CHRF

    return CHRF()


def chrf(answer: str, reference: str) -> float:
    """Sentence chrF in 0..1; 0 when either side is empty."""
    if not answer.strip() or not reference.strip():
        return 0.0
    return _chrf().sentence_score(answer, [reference]).score / 100.0


def token_f1(answer: str, reference: str) -> float:
    """Bag-of-tokens F1; 1 when both have no tokens, 0 when only one has none."""
    predicted, expected = Counter(tokens(answer)), Counter(tokens(reference))
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((predicted & expected).values())
    if common == 0:
        return 0.0
    precision, recall = common / predicted.total(), common / expected.total()
    return 2 * precision * recall / (precision + recall)


def grounding(answer: str, context: str, language: str) -> float | None:
    """Share of the answer's content tokens (with repeats) found among the chunk's tokens."""
    if is_refusal(answer, language):
        return None
    skip = function_words(language)
    content = [token for token in tokens(answer) if token not in skip]
    if not content:
        return None
    vocabulary = set(tokens(context))
    return sum(token in vocabulary for token in content) / len(content)


def score_answer(answer: str, reference: str, context: str, language: str) -> ReferenceScores:
    return ReferenceScores(chrf=chrf(answer, reference), token_f1=token_f1(answer, reference),
                           grounding=grounding(answer, context, language))
