"""Fault injection for canary tests: extra latency and HTTP 500s for one served model.

Off unless the server was started with `--enable-fault-injection` (or EUROLORA_SERVE_FAULTS=1); the
`/v1/faults` endpoints do not exist otherwise. Faults apply to the model that actually serves a
request (after a route picked it), so a canary can slow down or break the challenger alone.
"""

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    model: str
    latency_s: float = 0.0
    error_rate: float = 0.0
    seed: int = 0
    injected_errors: int = 0
    delayed: int = 0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def draw_error(self) -> bool:
        """Seeded: the same sequence of requests meets the same sequence of errors."""
        if self.error_rate <= 0:
            return False
        failed = self.error_rate >= 1 or self._rng.random() < self.error_rate
        self.injected_errors += failed
        return failed

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "latency_s": self.latency_s, "error_rate": self.error_rate, "seed": self.seed,
                "injected_errors": self.injected_errors, "delayed": self.delayed}
