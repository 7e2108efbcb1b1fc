"""What every step shares: the runtime context it receives and the way it publishes its outputs.

A step module defines `<Step>Inputs(Input)`, `<Step>Outputs(Output)` (Hera's pydantic IO models, so
Hera's runner can call it in a container) and `run(inputs) -> outputs`, decorated with
`@transient_exit`. The local runner calls the same `run`. Every Inputs carries a `context:
RuntimeContext`: where the run's artifacts live and the residency policy the step must enforce at run time.
"""

import functools
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from pydantic import BaseModel

from steps.common.errors import EXIT_TRANSIENT, TransientError
from steps.common.residency import ResidencyPolicy
from steps.common.storage import ArtifactStore, StorageSettings, join_uri

__all__ = ["EXIT_TRANSIENT", "RuntimeContext", "TransientError", "publishing", "transient_exit"]

log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_R = TypeVar("_R")


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


def transient_exit(run: Callable[_P, _R]) -> Callable[_P, _R]:
    """A step's `run` that exits with EXIT_TRANSIENT (75) when it raises TransientError.

    Hera's runner (`python -m hera.workflows.runner -e steps.<step>:run`, what every pod runs) and the
    local runner (pipelines/step_process.py) both call `run`; Hera's runner catches only Exception, so the
    SystemExit raised here becomes the process's exit code, which the retryStrategy (and the local runner)
    retry on; every other exception still exits 1. functools.wraps keeps the name, module and annotations
    (and `__wrapped__`, which inspect.signature follows) that Hera and the compiler read.
    """

    @functools.wraps(run)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return run(*args, **kwargs)
        except TransientError as exc:
            log.exception("%s.%s: transient failure, exit %d (retried)", run.__module__, run.__name__,
                          EXIT_TRANSIENT)
            raise SystemExit(EXIT_TRANSIENT) from exc

    return wrapper
