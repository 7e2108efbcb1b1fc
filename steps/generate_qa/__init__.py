"""generate_qa step: ingest's chunks -> question/answer pairs in each chunk's language, filtered, split
by document into train/val/test.

Publishes `qa_train.jsonl`, `qa_val.jsonl`, `qa_test.jsonl` (question, answer, type, language, chunk_id,
doc_id, answerable, context), `qa_rejected.jsonl` (every rejected pair with its reason) and `stats.json`
(counts only). The engine, torch and pyarrow are imported only while the step runs.
"""

import logging
import time
from collections import Counter

from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, publishing, transient_exit
from steps.generate_qa.settings import GenerateQASettings

log = logging.getLogger(__name__)


class NoQAPairs(ValueError):
    """Every generated pair was rejected (or no chunk had a sentence to ask about): nothing to publish."""


class GenerateQAInputs(Input):
    context: RuntimeContext
    settings: GenerateQASettings = GenerateQASettings()
    chunks_uri: str  # ingest's published artifact holding chunks.parquet


class GenerateQAOutputs(Output):
    qa_uri: str
    n_train: int
    n_val: int
    n_test: int
    n_rejected: int
    dataset_digest: str
    qa_model: str  # the model that wrote the pairs (lineage of the registered adapter)


@transient_exit
def run(inputs: GenerateQAInputs) -> GenerateQAOutputs:
    from steps.common.engines import make_engine
    from steps.common.models import engine_model
    from steps.generate_qa.artifact import write_artifact
    from steps.generate_qa.chunks import read_chunks
    from steps.generate_qa.generate import generate_pairs
    from steps.generate_qa.split import split_documents

    started = time.monotonic()
    context, settings = inputs.context, inputs.settings
    chunks = read_chunks(context, inputs.chunks_uri, settings.max_chunks)
    engine = make_engine(settings.engine, context)
    try:
        generated = generate_pairs(chunks, engine, settings)
    finally:
        engine.close()
    if not generated.accepted:
        reasons = Counter(rejected.reason for rejected in generated.rejected)
        raise NoQAPairs(f"generate_qa: no pair survived the filter from {len(chunks)} chunks "
                        f"({len(generated.rejected)} rejected, by reason {dict(sorted(reasons.items()))}); "
                        "raise max_new_tokens or pairs_per_chunk, lower grounding_threshold, or use a "
                        "larger model")
    assignment = split_documents(((pair.doc_id, pair.language, pair.answerable) for pair in generated.accepted),
                                 settings.split, settings.seed)
    with publishing(context, "generate_qa", "qa") as (directory, uri):
        stats = write_artifact(generated, assignment, len(chunks), directory)
    splits = stats["splits"]
    if not splits["test"]["pairs"]:
        log.warning("generate_qa: the test split is empty (pairs from only %d document(s)); the judge needs "
                    "test pairs from at least 2 documents", len(set(assignment)))
    log.info("generate_qa: %d chunks -> %d train / %d val / %d test pairs, %d rejected in %.1fs",
             len(chunks), splits["train"]["pairs"], splits["val"]["pairs"], splits["test"]["pairs"],
             stats["rejected"], time.monotonic() - started)
    return GenerateQAOutputs(
        qa_uri=uri, n_train=splits["train"]["pairs"], n_val=splits["val"]["pairs"],
        n_test=splits["test"]["pairs"], n_rejected=stats["rejected"],
        dataset_digest=context.store().read_manifest(uri).digest, qa_model=engine_model(settings.engine),
    )
