from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, transient_exit
from steps.promote.settings import PromoteSettings


class PromoteInputs(Input):
    context: RuntimeContext
    settings: PromoteSettings
    adapter_uri: str
    passed: bool
    code_version: str


class PromoteOutputs(Output):
    promoted: bool
    version: str = ""


@transient_exit
def run(inputs: PromoteInputs) -> PromoteOutputs:
    return PromoteOutputs(promoted=inputs.passed, version="1")
