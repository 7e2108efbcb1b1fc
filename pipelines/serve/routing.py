"""Weighted routes: a virtual model name that splits requests between served models (canary traffic).

vLLM itself has no such thing (in production the split is done in front of it); here it lets a canary
run end to end on one machine. Three strategies, all deterministic so tests can check the split:

- `round_robin`: smooth weighted round robin (nginx's): over every window of sum(weights) requests
  each target gets exactly its weight, interleaved (90/10 gives 9 champion, 1 challenger, repeat).
- `hash`: sha256 of the request's `user` (else of its messages) picks a bucket in [0, sum(weights)):
  one user always meets the same adapter, and the split converges to the weights over many users.
- `random`: draws from `random.Random(seed)`.
"""

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Strategy = Literal["round_robin", "hash", "random"]


@dataclass
class Route:
    name: str
    weights: dict[str, int]
    strategy: Strategy = "round_robin"
    seed: int = 0
    served: Counter[str] = field(default_factory=Counter)
    _current: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.weights = {target: weight for target, weight in self.weights.items()}
        self._current = {target: 0 for target in self.weights}
        self._rng = random.Random(self.seed)

    @property
    def total(self) -> int:
        return sum(self.weights.values())

    def pick(self, key: str) -> str:
        """The target for one request; `key` is only used by the `hash` strategy."""
        live = {target: weight for target, weight in self.weights.items() if weight > 0}
        if self.strategy == "round_robin":
            total = sum(live.values())
            for target, weight in live.items():
                self._current[target] += weight
            chosen = max(live, key=lambda t: self._current[t])  # ties: first in the weights' order
            self._current[chosen] -= total
        else:
            if self.strategy == "hash":
                point = int.from_bytes(hashlib.sha256(f"{self.name}\0{key}".encode()).digest()[:8], "big")
            else:
                point = self._rng.getrandbits(64)
            bucket = point % sum(live.values())
            for chosen, weight in live.items():
                if bucket < weight:
                    break
                bucket -= weight
        self.served[chosen] += 1
        return chosen

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "object": "route", "weights": dict(self.weights), "strategy": self.strategy,
                "seed": self.seed, "served": {target: self.served.get(target, 0) for target in self.weights}}
