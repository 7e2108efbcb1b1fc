"""What every step shares: the runtime context it receives and the way it publishes its outputs.

A step module defines `<Step>Inputs(Input)`, `<Step>Outputs(Output)` (Hera's pydantic IO models, so
Hera's runner can call it in a container) and `run(inputs) -> outputs`. The local runner calls the
same `run`. Every Inputs carries a `context: RuntimeContext`: where the run's artifacts live and the
residency policy the step must enforce at run time.
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from steps.common.errors import EXIT_TRANSIENT, TransientError
from steps.common.residency import ResidencyPolicy
from steps.common.storage import ArtifactStore, StorageSettings, join_uri

__all__ = ["EXIT_TRANSIENT", "RuntimeContext", "TransientError", "publishing"]


class RuntimeContext(BaseModel):
    """Passed to every step: identifies the run and where its artifacts go."""

    model_config = {"extra": "forbid"}
    run_id: str
    storage: StorageSettings
    residency: ResidencyPolicy
    # Local scratch space for downloads and model caches; pods use their emptyDir.
    scratch_dir: str = ""

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.storage, self.residency)

    def output_uri(self, step: str, name: str) -> str:
        """Where `step` publishes its artifact `name` for this run."""
        return join_uri(self.storage.artifact_root, "runs", self.run_id, step, name)

    def scratch(self) -> Path:
        root = Path(self.scratch_dir) if self.scratch_dir else Path(tempfile.gettempdir()) / "eurolora"
        root.mkdir(parents=True, exist_ok=True)
        return root


@contextmanager
def publishing(context: RuntimeContext, step: str, name: str) -> Iterator[tuple[Path, str]]:
    """Yield (local dir to fill, final URI); publish atomically only if the block finished cleanly."""
    uri = context.output_uri(step, name)
    with tempfile.TemporaryDirectory(prefix=f"{step}-{name}-", dir=context.scratch()) as tmp:
        yield Path(tmp), uri
        context.store().publish_dir(Path(tmp), uri)
