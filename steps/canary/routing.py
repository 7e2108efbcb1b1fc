"""Move the adapter family's traffic between adapters. Weights are always set absolutely (idempotent).

- `LocalRouter`: `eurolora serve`'s weighted route named after the family (`POST /v1/routes`), set on
  every replica. Clients ask for model `<family>`; the route picks `<family>-v<N>` per request.
- `ModelRewriteRouter`: the Gateway API Inference Extension's `InferenceModelRewrite` (alpha,
  `inference.networking.x-k8s.io/v1alpha2`): requests for model `<family>` that reach the InferencePool
  are rewritten to one of the versioned adapter names by weight. One merge-patch replaces the rule's
  whole target list; weights must be >= 1, so a target at 0% is left out.
"""

import logging
from typing import Any, Protocol

from steps.canary.kube import KubeClient, object_path
from steps.canary.serving import ReplicaClient, ServingError

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


class LocalRouter:
    def __init__(self, replicas: list[ReplicaClient], route: str, strategy: str = "round_robin") -> None:
        self.replicas, self.route, self.strategy = replicas, route, strategy

    def set_weights(self, weights: dict[str, int]) -> None:
        wanted = live(weights)
        for replica in self.replicas:
            got = replica.set_route(self.route, wanted, self.strategy)
            if {k: v for k, v in got.get("weights", {}).items() if v} != wanted:
                raise ServingError(f"replica {replica.name}: route {self.route} is {got.get('weights')} after "
                                   f"setting {wanted}")
        log.info("canary: route %s = %s on %d replica(s)", self.route, wanted, len(self.replicas))

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "route": self.route, "replicas": [r.base_url for r in self.replicas]}


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
