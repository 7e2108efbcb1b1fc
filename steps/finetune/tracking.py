"""The finetune run in MLflow: tags, params, the loss curve and the final metrics.

Every call goes through `steps.common.registry.Registry`, which checks the tracking URI against the
residency policy, bounds each request (MLFLOW_HTTP_REQUEST_TIMEOUT from `registry.timeout_s`, few
retries, scoped to the call) and turns an unreachable registry into TransientError (the step is retried).
"""

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from steps.common.registry import Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy

T = TypeVar("T")
_BATCH = 500  # MLflow accepts at most 1000 metrics per log_batch


class TrackingRun:
    def __init__(self, settings: RegistrySettings, residency: ResidencyPolicy) -> None:
        self._registry = Registry(settings, residency)
        self.experiment = settings.experiment
        self.artifact_location = settings.artifact_location or None
        self.run_id = ""

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        return self._registry.call(what, fn)

    def start(self, run_name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        experiment = self._call("get_experiment", lambda c: c.get_experiment_by_name(self.experiment))
        if experiment is None:
            try:
                experiment_id = self._call("create_experiment", lambda c: c.create_experiment(
                    self.experiment, artifact_location=self.artifact_location))
            except MlflowException:  # created concurrently by another run
                experiment_id = self._call("get_experiment",
                                           lambda c: c.get_experiment_by_name(self.experiment)).experiment_id
        else:
            experiment_id = experiment.experiment_id
        run = self._call("create_run", lambda c: c.create_run(experiment_id, run_name=run_name, tags=tags))
        self.run_id = run.info.run_id
        self._call("log_params", lambda c: c.log_batch(
            self.run_id, params=[Param(key, str(value)) for key, value in params.items()]))
        return self.run_id

    def log_results(self, curve: list[tuple[int, float]], final: dict[str, float], tags: dict[str, str]) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric("train_loss", loss, now, step) for step, loss in curve]
        metrics += [Metric(key, value, now, 0) for key, value in final.items()]
        for start in range(0, len(metrics), _BATCH):
            chunk = metrics[start:start + _BATCH]
            self._call("log_metrics", lambda c, chunk=chunk: c.log_batch(self.run_id, metrics=chunk))
        self._call("set_tags", lambda c: c.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()]))

    def end(self, ok: bool) -> None:
        status = "FINISHED" if ok else "FAILED"
        self._call("set_terminated", lambda c: c.set_terminated(self.run_id, status))


@contextmanager
def tracked_run(
    settings: RegistrySettings, residency: ResidencyPolicy, run_name: str, tags: dict[str, str],
    params: dict[str, Any],
) -> Iterator[TrackingRun]:
    """A run started before training, so that a registry outage fails the step before the expensive part.

    Ends FINISHED, or FAILED if the block raised.
    """
    run = TrackingRun(settings, residency)
    try:
        run.start(run_name, tags, params)
        yield run
    except BaseException:
        if run.run_id:
            with contextlib.suppress(Exception):  # the original error matters more than the status update
                run.end(ok=False)
        raise
    run.end(ok=True)


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested settings as flat MLflow params (`lora.r`, `lora.target_modules`, ...)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else key, item))
        return out
    return {prefix: ",".join(map(str, value)) if isinstance(value, list) else value}
