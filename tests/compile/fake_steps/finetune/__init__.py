from typing import Annotated

from hera.workflows import Parameter
from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, transient_exit
from steps.finetune.settings import FinetuneSettings


class FinetuneInputs(Input):
    context: RuntimeContext
    settings: FinetuneSettings
    # Renamed for Argo: tasks must pass `dataset-uri`, not the field name.
    dataset_uri: Annotated[str, Parameter(name="dataset-uri")]
    base_model: str
    code_version: str


class FinetuneOutputs(Output):
    adapter_uri: str
    final_loss: float = 0.0


@transient_exit
def run(inputs: FinetuneInputs) -> FinetuneOutputs:
    return FinetuneOutputs(adapter_uri=inputs.context.output_uri("finetune", "adapter"), final_loss=0.5)
