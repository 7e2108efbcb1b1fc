"""Settings of the judge step: how answers are generated and judged, and what the gate demands."""

from pydantic import BaseModel, Field, field_validator, model_validator

from steps.common.engines.base import EngineSettings


class GateSettings(BaseModel):
    """The promotion gate (the exact rule is in steps/judge/gate.py)."""

    model_config = {"extra": "forbid"}
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    bootstrap_samples: int = Field(2000, ge=100, le=100_000)
    seed: int = 0
    # Tolerated, statistically significant degradation against the champion (rate points, 0..1).
    a_rate_tolerance: float = Field(0.0, ge=0.0, le=1.0)
    c_rate_tolerance: float = Field(0.0, ge=0.0, le=1.0)
    # With few items every interval is wide and "not significantly worse" proves nothing: fail closed.
    min_items: int = Field(20, ge=1)
    min_stop_rate: float = Field(0.9, ge=0.0, le=1.0)
    # Share of unanswerable questions the candidate must refuse; 0 disables the criterion.
    min_refusal_rate: float = Field(0.5, ge=0.0, le=1.0)


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
    min_answer_chars: int = Field(1, ge=0)
    max_answer_chars: int = Field(2000, ge=1)
    report_examples: int = Field(5, ge=0, le=100)  # wins and losses shown in the HTML report
    gate: GateSettings = Field(default_factory=GateSettings)

    @field_validator("engine")
    @classmethod
    def _greedy(cls, engine: EngineSettings) -> EngineSettings:
        # Candidate and champion must be compared under identical, deterministic decoding.
        if engine.temperature != 0:
            raise ValueError("judge.engine.temperature must be 0: evaluation decodes greedily")
        return engine

    @model_validator(mode="after")
    def _length_bounds(self) -> "JudgeSettings":
        if self.min_answer_chars > self.max_answer_chars:
            raise ValueError("judge.min_answer_chars must not exceed judge.max_answer_chars")
        return self
