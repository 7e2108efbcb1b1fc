"""Move the adapter family's traffic between adapters. Weights are always set absolutely (idempotent).

- `ClientSplit` (local): the canary's own traffic is the split. It addresses every request to a versioned
  adapter name itself, the challenger's share of them by weight, in a fixed interleaved order (weights
  9:1 -> one request in ten, spread out; 1:1 -> every other one). Nothing on the server changes: a vLLM
  server has no weighted routes, the gateway's endpoint picker does that on a cluster.
- `ModelRewriteRouter`: the Gateway API Inference Extension's `InferenceModelRewrite` (alpha,
  `inference.networking.x-k8s.io/v1alpha2`): requests for model `<family>` that reach the InferencePool
  are rewritten to one of the versioned adapter names by weight. One merge-patch replaces the rule's
  whole target list; weights must be >= 1, so a target at 0% is left out.
"""

import logging
from typing import Any, Protocol

from steps.canary.kube import KubeClient, object_path

log = logging.getLogger(__name__)

REWRITE_API = "inference.networking.x-k8s.io/v1alpha2"
POOL_GROUP = "inference.networking.k8s.io"


class Router(Protocol):
    def set_weights(self, weights: dict[str, int]) -> None:
        """Route the family's traffic to exactly these adapters (weight 0 or absent: none)."""
        ...

    def describe(self) -> dict[str, Any]: ...


def live(weights: dict[str, int]) -> dict[str, int]:
    kept = {name: int(w) for name, w in weights.items() if int(w) > 0}
    if not kept:
        raise ValueError(f"route weights {weights} send traffic nowhere")
    return kept


class ClientSplit:
    """The split of the canary's own requests (local runs): `model_for(i)` names the model of request i."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def set_weights(self, weights: dict[str, int]) -> None:
        self.order = interleave(live(weights))
        log.info("canary: the canary's own requests go to %s", live(weights))

    def model_for(self, index: int) -> str:
        if not self.order:
            raise ValueError("no split set yet")
        return self.order[index % len(self.order)]

    def describe(self) -> dict[str, Any]:
        shares = {name: self.order.count(name) for name in dict.fromkeys(self.order)}
        return {"kind": "client_split", "weights": shares}


def interleave(weights: dict[str, int]) -> list[str]:
    """One cycle of smooth weighted round robin: each name `weight` times, as evenly spread as possible."""
    total = sum(weights.values())
    current = dict.fromkeys(weights, 0)
    order = []
    for _ in range(total):
        for name, weight in weights.items():
            current[name] += weight
        chosen = max(current, key=lambda name: current[name])
        current[chosen] -= total
        order.append(chosen)
    return order


def model_rewrite_patch(family: str, pool: str, weights: dict[str, int]) -> dict[str, Any]:
    """The merge-patch body that makes `family` requests go to `weights` (absolute)."""
    wanted = live(weights)
    if len(wanted) == 1:
        targets: list[dict[str, Any]] = [{"modelRewrite": next(iter(wanted))}]
    else:
        targets = [{"modelRewrite": name, "weight": w} for name, w in wanted.items()]
    return {"spec": {"poolRef": {"group": POOL_GROUP, "kind": "InferencePool", "name": pool},
                     "rules": [{"matches": [{"model": {"type": "Exact", "value": family}}], "targets": targets}]}}


class ModelRewriteRouter:
    def __init__(self, kube: KubeClient, family: str, name: str = "", pool: str = "vllm") -> None:
        self.kube, self.family, self.pool = kube, family, pool
        self.name = name or family
        self.path = object_path(REWRITE_API, "inferencemodelrewrites", kube.settings.namespace, self.name)

    def set_weights(self, weights: dict[str, int]) -> None:
        patch = model_rewrite_patch(self.family, self.pool, weights)
        self.kube.merge_patch(self.path, patch)
        log.info("canary: InferenceModelRewrite %s/%s targets %s", self.kube.settings.namespace, self.name,
                 patch["spec"]["rules"][0]["targets"])

    def describe(self) -> dict[str, Any]:
        return {"kind": "inference_model_rewrite", "object": self.path}
