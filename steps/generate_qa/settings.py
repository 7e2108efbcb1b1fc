"""Settings of the generate_qa step: what to ask per chunk, how to filter, how to split."""

from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from steps.common.engines.base import EngineSettings

QuestionType = Literal["factual", "conceptual", "comparison"]
# Conservative for European languages (English averages ~4 characters per token, German and French less).
CHARS_PER_TOKEN = 3
JSON_OVERHEAD_TOKENS = 16  # braces, keys, quotes


class SplitFractions(BaseModel):
    """Shares of documents (not pairs) in each split, so no document is seen in two splits."""

    model_config = {"extra": "forbid"}
    train: float = Field(0.8, ge=0, le=1)
    val: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got train+val+test = {total:.4f}")
        if self.train <= 0:
            raise ValueError("split.train must be > 0: finetune needs training pairs")
        return self


class GenerateQASettings(BaseModel):
    model_config = {"extra": "forbid"}

    engine: EngineSettings = Field(default_factory=EngineSettings)
    # Answerable pairs asked per chunk; each asks about a different sentence of the chunk.
    pairs_per_chunk: int = Field(3, ge=1, le=20)
    # Cycled over a chunk's pairs (pair i gets question_types[i % len]).
    question_types: list[QuestionType] = Field(
        default_factory=lambda: ["factual", "conceptual", "comparison"], min_length=1)
    # Questions per chunk that the chunk cannot answer; their reference answer is the refusal sentence.
    unanswerable_per_chunk: int = Field(1, ge=0, le=10)
    # Share of an answer's words that must occur in its chunk (answerable pairs only).
    grounding_threshold: float = Field(0.7, ge=0, le=1)
    # Bounds in characters; the max bounds are also the JSON schema's maxLength (the model cannot exceed them).
    question_min_chars: int = Field(12, ge=1)
    question_max_chars: int = Field(160, ge=10, le=1000)
    answer_min_chars: int = Field(8, ge=1)
    answer_max_chars: int = Field(320, ge=10, le=2000)
    split: SplitFractions = Field(default_factory=SplitFractions)
    seed: int = 0
    # Token budget of one generated JSON object; it must leave room for the longest allowed strings.
    max_new_tokens: int = Field(192, ge=16, le=4096)
    # Use only the first N chunks (in artifact order): a cap for tiny local budgets. None = all.
    max_chunks: int | None = Field(None, ge=1)
    # Share of generation requests the engine may fail (HTTP errors, timeouts, crashes; not replies the
    # filter rejects) before the step fails instead of publishing a dataset thinned by an outage.
    max_failed_request_fraction: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _bounds_consistent(self) -> Self:
        if self.question_min_chars > self.question_max_chars:
            raise ValueError(f"question_min_chars ({self.question_min_chars}) exceeds "
                             f"question_max_chars ({self.question_max_chars})")
        if self.answer_min_chars > self.answer_max_chars:
            raise ValueError(f"answer_min_chars ({self.answer_min_chars}) exceeds "
                             f"answer_max_chars ({self.answer_max_chars})")
        # A budget the longest allowed reply cannot fit in cuts the JSON before its closing brace.
        needed = (self.question_max_chars + self.answer_max_chars) // CHARS_PER_TOKEN + JSON_OVERHEAD_TOKENS
        if self.max_new_tokens < needed:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) cannot hold a reply of question_max_chars + "
                             f"answer_max_chars ({self.question_max_chars} + {self.answer_max_chars}) characters: "
                             f"raise it to at least {needed} or lower those bounds")
        return self
