"""Settings of the judge step: how answers are generated and judged, and what the gate demands."""

from pydantic import BaseModel, Field, field_validator

from steps.common.engines.base import EngineSettings
from steps.common.eval_report import GateSettings


class LengthBounds(BaseModel):
    """How long an answer may be, relative to the reference answer of its question.

    Relative, because the references are what the adapter is trained to say: an answer several times
    longer pads or rambles. A fixed cap cannot tell (the judge's budget of ~100 new tokens is ~400-500
    characters, so a cap of 2000 never binds), and an answer cut at the token budget already fails the
    stop check. The slack lets a full sentence answer a terse reference ("Four weeks.").
    """

    model_config = {"extra": "forbid"}
    min_chars: int = Field(1, ge=0)  # an empty answer is never right
    max_ratio: float = Field(2.0, gt=0)
    slack_chars: int = Field(40, ge=0)

    def max_chars(self, reference: str) -> int:
        return int(self.max_ratio * len(reference.strip())) + self.slack_chars


class JudgeSettings(BaseModel):
    model_config = {"extra": "forbid"}
    # Generates both the candidate's and the champion's answers; its `model` is replaced by the
    # pipeline's base_model (the base the adapters were trained on).
    engine: EngineSettings = Field(default_factory=EngineSettings)
    # The self-hosted judge model; the same settings as `engine` share one loaded model.
    judge_engine: EngineSettings = Field(default_factory=EngineSettings)
    max_new_tokens: int = Field(128, ge=1, le=8192)
    judge_max_new_tokens: int = Field(96, ge=32, le=1024)  # fits the bounded verdict JSON
    max_items: int | None = Field(None, ge=1)  # evaluate a seeded sample of this many test items
    pairwise: bool = False  # also ask which answer is better, in both orders
    length: LengthBounds = Field(default_factory=LengthBounds)
    report_examples: int = Field(5, ge=0, le=100)  # wins and losses shown in the HTML report
    gate: GateSettings = Field(default_factory=GateSettings)

    @field_validator("engine")
    @classmethod
    def _greedy(cls, engine: EngineSettings) -> EngineSettings:
        # Candidate and champion must be compared under identical, deterministic decoding.
        if engine.temperature != 0:
            raise ValueError("judge.engine.temperature must be 0: evaluation decodes greedily")
        return engine
