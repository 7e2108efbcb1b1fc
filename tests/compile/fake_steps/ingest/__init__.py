from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, transient_exit
from steps.ingest.settings import IngestSettings


class IngestInputs(Input):
    context: RuntimeContext
    settings: IngestSettings
    corpus_uri: str
    tokenizer_model: str


class IngestOutputs(Output):
    chunks_uri: str
    n_chunks: int = 0


@transient_exit
def run(inputs: IngestInputs) -> IngestOutputs:
    return IngestOutputs(chunks_uri=inputs.context.output_uri("ingest", "chunks"), n_chunks=1)
