"""The workflow's exit handler (onExit): records how the run ended, as JSON, next to its artifacts.

Runs after every workflow (succeeded, failed or errored) in a small cpu pod through the step runner:
writes `<artifact_root>/runs/<workflow name>/workflow-status.json` with the status, the duration and one
entry per failed node (name, template, phase, message, pod), and logs the same JSON line. Node messages
are Argo's (exit codes, deadlines), never document or prompt text.

No `from __future__ import annotations`: Hera's runner inspects these annotations.
"""

import json
from typing import Any

from hera.workflows.io import Input

from steps.common.contract import RuntimeContext, TransientError, transient_exit
from steps.common.storage import StorageError, join_uri

STATUS_FILE = "workflow-status.json"
_FAILURE_FIELDS = ("displayName", "templateName", "phase", "message", "podName", "finishedAt")


class ExitInputs(Input):
    context: RuntimeContext
    status: str  # {{workflow.status}}: Succeeded, Failed or Error
    failures: str = "[]"  # {{workflow.failures}}: a JSON list (Argo may quote it once more)
    duration: str = ""  # {{workflow.duration}} in seconds


def parse_failures(raw: str) -> list[dict[str, Any]]:
    value: Any = raw
    for _ in range(2):  # Argo quotes the JSON list with strconv.Quote before substitution
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            return [{"message": raw[:500]}]
    if not isinstance(value, list):
        return []
    return [{k: item.get(k) for k in _FAILURE_FIELDS if k in item} for item in value if isinstance(item, dict)]


@transient_exit
def record(inputs: ExitInputs) -> None:
    try:
        duration_s: float | None = round(float(inputs.duration), 1)
    except ValueError:
        duration_s = None
    report = {
        "workflow": inputs.context.run_id,
        "status": inputs.status,
        "duration_s": duration_s,
        "failures": parse_failures(inputs.failures),
    }
    line = json.dumps(report, sort_keys=True)
    print(line, flush=True)
    uri = join_uri(inputs.context.storage.artifact_root, "runs", inputs.context.run_id, STATUS_FILE)
    try:
        inputs.context.store().write_bytes(uri, (line + "\n").encode())
    except (StorageError, OSError) as exc:
        raise TransientError(f"cannot write {uri}: {exc}") from exc
    except Exception as exc:  # botocore errors: endpoint unreachable, throttled
        if type(exc).__module__.startswith(("botocore", "boto3")):
            raise TransientError(f"cannot write {uri}: {exc}") from exc
        raise
    print(f"recorded {uri}", flush=True)
