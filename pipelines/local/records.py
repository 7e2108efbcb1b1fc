"""What the local runner records about a run: one record per step and the run summary."""

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

StepStatus = Literal["pending", "running", "succeeded", "cached", "failed", "skipped", "interrupted"]


class StepRecord(BaseModel):
    name: str
    status: StepStatus = "pending"
    duration_s: float = 0.0
    attempts: int = 0
    outputs: dict[str, Any] = {}
    log: str = ""  # <run dir>/steps/<name>/log.txt: set before the step can fail
    cache_key: str = ""
    reused_from_run: str = ""  # the run whose outputs a cache hit reused
    error: str = ""


class RunSummary(BaseModel):
    run_id: str
    run_dir: str
    config_name: str
    until: str = ""  # the run's --until, so that resuming it covers the same steps
    status: Literal["running", "succeeded", "failed", "interrupted"] = "running"
    duration_s: float = 0.0
    steps: list[StepRecord] = []

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
