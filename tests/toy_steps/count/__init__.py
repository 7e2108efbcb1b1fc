"""A toy step for runner tests: counts the files of a corpus and publishes the count as an artifact."""

import os
from pathlib import Path

from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, TransientError, publishing, transient_exit


class CountInputs(Input):
    context: RuntimeContext
    corpus_uri: str
    label: str


class CountOutputs(Output):
    counts_uri: str
    n_files: int


@transient_exit
def run(inputs: CountInputs) -> CountOutputs:
    _maybe_fail("count")
    files = inputs.context.store().download_prefix(inputs.corpus_uri, inputs.context.scratch() / "dl")
    with publishing(inputs.context, "count", "counts") as (out, uri):
        (out / "count.txt").write_text(f"{inputs.label}:{len(files)}")
    return CountOutputs(counts_uri=uri, n_files=len(files))


def _maybe_fail(step: str) -> None:
    """Tests steer failures through the environment the runner passes down."""
    mode = os.environ.get(f"TOY_FAIL_{step.upper()}", "")
    if mode == "transient-once":
        marker = Path(os.environ["TOY_MARKER_DIR"]) / f"{step}.failed-once"
        if not marker.exists():
            marker.write_text("x")
            raise TransientError("simulated endpoint outage")
    elif mode == "always":
        raise RuntimeError("simulated bug")
