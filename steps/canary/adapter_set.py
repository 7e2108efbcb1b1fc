"""The declarative adapter set of a serving deployment: which adapters every replica must serve.

Stored as `adapters.json` in a ConfigMap (manifests/serving/10-adapter-set.yaml) that the replicas
mount: their adapter-sync sidecar (pipelines/serving/adapter_sync.py) downloads every listed adapter from
the EU bucket and loads it, so a restarted pod comes back with the same set. The canary step edits it
(read, modify, merge-patch with the read resourceVersion: a compare-and-set, retried on conflict):
the challenger is added before it is loaded, the losing adapter removed after it was unloaded.
"""

import json
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from steps.canary.kube import KubeClient, KubeError, object_path
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings

CONFIG_KEY = "adapters.json"
Role = Literal["champion", "challenger"]


class AdapterEntry(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")  # <family>-v<N>
    uri: str  # the published adapter directory (s3://...)
    role: Role  # champions must be loaded for a replica to be ready; challengers are best effort
    version: str = ""


class AdapterSet(BaseModel):
    model_config = {"extra": "forbid"}
    family: str
    base_model_uri: str = ""  # synced to the model volume by the init container
    storage: StorageSettings | None = None  # how to reach the bucket (credentials from env, by reference)
    residency: ResidencyPolicy = Field(default_factory=ResidencyPolicy)
    adapters: list[AdapterEntry] = Field(default_factory=list)

    def with_adapter(self, name: str, uri: str, version: str, role: Role) -> "AdapterSet":
        """`name` added with `role`; unchanged when it is already listed with the same weights.

        ValueError when the set lists `name` with another URI or version: a served name never changes
        weights (a replica would keep the old ones, vLLM might reuse a prefix cache computed with them)."""
        entry = next((a for a in self.adapters if a.name == name), None)
        if entry is not None:
            if (entry.uri, entry.version) != (uri, version):
                raise ValueError(f"the adapter set already lists {name} as version {entry.version or '?'} at "
                                 f"{entry.uri}, not version {version} at {uri}: a served name never changes "
                                 "weights; register the new weights as a new version")
            return self
        new = AdapterEntry(name=name, uri=uri, role=role, version=version)
        adapters = [new, *self.adapters] if role == "champion" else [*self.adapters, new]
        return self.model_copy(update={"adapters": adapters})

    def promoted(self, name: str) -> "AdapterSet":
        """`name` becomes the only champion; every other adapter of the set is dropped."""
        entry = next((a for a in self.adapters if a.name == name), None)
        if entry is None:
            raise ValueError(f"{name} is not in the adapter set")
        return self.model_copy(update={"adapters": [entry.model_copy(update={"role": "champion"})]})

    def without(self, name: str) -> "AdapterSet":
        return self.model_copy(update={"adapters": [a for a in self.adapters if a.name != name]})


def configmap_path(kube: KubeClient, name: str) -> str:
    return object_path("v1", "configmaps", kube.settings.namespace, name)


def update_adapter_set(kube: KubeClient, configmap: str, change: Callable[[AdapterSet], AdapterSet],
                       attempts: int = 5) -> AdapterSet:
    """Read the set, apply `change`, write it back only if nobody wrote in between (else retry)."""
    path = configmap_path(kube, configmap)
    for _ in range(attempts):
        current = kube.get(path)
        raw = (current.get("data") or {}).get(CONFIG_KEY)
        if raw is None:
            raise KubeError(f"ConfigMap {configmap} has no {CONFIG_KEY}: apply manifests/serving first", 404)
        before = AdapterSet.model_validate_json(raw)
        after = change(before)
        if after == before:
            return after
        patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                 "data": {CONFIG_KEY: json.dumps(after.model_dump(mode="json", exclude_none=True), indent=1)}}
        try:
            kube.merge_patch(path, patch)
            return after
        except KubeError as exc:
            if exc.status != 409:
                raise
    raise KubeError(f"ConfigMap {configmap}: {attempts} conflicting concurrent updates", 409)
