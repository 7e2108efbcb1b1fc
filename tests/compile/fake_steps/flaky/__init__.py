from hera.workflows.io import Input, Output

from steps.common.contract import TransientError, transient_exit


class FlakyInputs(Input):
    failure: str  # "transient", "bug" or "none"


class FlakyOutputs(Output):
    answer: int


@transient_exit
def run(inputs: FlakyInputs) -> FlakyOutputs:
    if inputs.failure == "transient":
        raise TransientError("endpoint unreachable")
    if inputs.failure == "bug":
        raise ValueError("a bug")
    return FlakyOutputs(answer=42)
