"""A toy step for runner tests: reads the upstream artifact and reports whether it is large."""

from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, transient_exit
from tests.toy_steps.count import _maybe_fail


class SummariseInputs(Input):
    context: RuntimeContext
    counts_uri: str


class SummariseOutputs(Output):
    text: str
    large: bool


@transient_exit
def run(inputs: SummariseInputs) -> SummariseOutputs:
    _maybe_fail("summarise")
    local = inputs.context.store().materialize(inputs.counts_uri, inputs.context.scratch())
    text = (local / "count.txt").read_text()
    return SummariseOutputs(text=text, large=int(text.split(":")[1]) > 2)
