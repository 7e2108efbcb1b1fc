"""A tests-only step with more numeric outputs than Argo allows metrics on one template."""

from hera.workflows.io import Input, Output
from pydantic import create_model

from steps.common.contract import transient_exit


class WideInputs(Input):
    label: str


WideOutputs = create_model("WideOutputs", __base__=Output, **{f"value_{i}": (float, 0.0) for i in range(98)})


@transient_exit
def run(inputs: WideInputs) -> WideOutputs:  # type: ignore[valid-type]
    return WideOutputs()
