"""A toy step for engine tests: answers one question with the engine its settings name, as a step pod would
(make_engine, generate, close), so a test can run it through the real step entry points."""

from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, transient_exit
from steps.common.engines import make_engine
from steps.common.engines.base import EngineSettings, GenerationRequest


class GenerateInputs(Input):
    context: RuntimeContext
    engine: EngineSettings
    question: str


class GenerateOutputs(Output):
    answer: str
    finish_reason: str


@transient_exit
def run(inputs: GenerateInputs) -> GenerateOutputs:
    engine = make_engine(inputs.engine, inputs.context)
    try:
        [result] = engine.generate([GenerationRequest(messages=[{"role": "user", "content": inputs.question}],
                                                      max_new_tokens=8)])
    finally:
        engine.close()
    return GenerateOutputs(answer=result.text, finish_reason=result.finish_reason)
