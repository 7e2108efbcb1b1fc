"""The HTML report a step shows in the Argo UI: the compiler sets the variable on the pod, the step copies."""

import os
import shutil
from pathlib import Path

# Set on Argo pods: a local copy of the HTML report there becomes an output artifact the Argo UI shows.
UI_REPORT_ENV = "EUROLORA_UI_REPORT_PATH"


def copy_for_argo_ui(report: Path) -> None:
    """Copy `report` where the pod's UI artifact is collected; a no-op outside Argo."""
    target = os.environ.get(UI_REPORT_ENV)
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report, target)
