"""generate_qa's run() end to end on the embedded model over a tiny hand-built chunks artifact."""

import json
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings
from steps.generate_qa import GenerateQAInputs, run
from steps.generate_qa.refusals import REFUSALS
from steps.generate_qa.settings import GenerateQASettings
from tests.local.test_transformers_engine import one_torch_thread  # noqa: F401 - a fixture

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

FIELDS = {"question", "answer", "type", "language", "chunk_id", "doc_id", "answerable", "context"}
# (doc_id, language, text): one chunk per document, so the split by document has four to share out.
CHUNKS = [
    ("handbook.md", "en", ("The canteen in Hamburg opens at 7:30 and closes at 15:00. Lunch costs 4.50 euros "
     "for employees. Every new employee receives a laptop from the IT service desk on the first day.")),
    ("fleet.md", "en", ("The company owns 180 trucks, and 95 of them are fully electric. All trucks are "
     "serviced every six months in the workshop in Billbrook.")),
    ("sicherheit.html", "de", ("In allen Lagerhallen müssen Sicherheitsschuhe getragen werden. Gabelstapler "
     "dürfen nur mit gültigem Staplerschein gefahren werden.")),
    ("lyon.pdf", "fr", ("L'entrepôt de Lyon a ouvert ses portes en septembre 2016. La responsable du site "
     "est Claire Dubois.")),
]


def publish_chunks(context: RuntimeContext, directory: Path) -> str:
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    rows = [{"doc_id": doc, "chunk_id": f"{doc}#00000", "text": text, "language": language,
             "n_tokens": len(text.split()), "sha256": hashlib.sha256(text.encode()).hexdigest()}
            for doc, language, text in CHUNKS]
    pq.write_table(pa.Table.from_pylist(rows), directory / "chunks.parquet")
    uri = context.output_uri("ingest", "chunks")
    context.store().publish_dir(directory, uri)
    return uri


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_run_publishes_split_filtered_pairs(tmp_path: Path) -> None:
    context = RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))
    chunks_uri = publish_chunks(context, tmp_path / "chunks")
    settings = GenerateQASettings(pairs_per_chunk=2, unanswerable_per_chunk=1, max_new_tokens=112,
                                  question_max_chars=120, answer_max_chars=160)

    out = run(GenerateQAInputs(context=context, settings=settings, chunks_uri=chunks_uri))

    directory = Path(out.qa_uri.removeprefix("file://"))
    assert out.qa_uri == context.output_uri("generate_qa", "qa")
    assert out.dataset_digest == context.store().read_manifest(out.qa_uri).digest
    splits = {name: read_jsonl(directory / f"qa_{name}.jsonl") for name in ("train", "val", "test")}
    rejected = read_jsonl(directory / "qa_rejected.jsonl")
    stats = json.loads((directory / "stats.json").read_text())

    assert (out.n_train, out.n_val, out.n_test, out.n_rejected) == (
        len(splits["train"]), len(splits["val"]), len(splits["test"]), len(rejected))
    accepted = [pair for pairs in splits.values() for pair in pairs]
    assert accepted, stats  # the embedded model writes at least some usable pairs
    # Every request ends up accepted or rejected (with a reason), nothing silently dropped.
    assert stats["requests"] == len(accepted) + len(rejected) == stats["accepted"] + stats["rejected"]
    assert sum(stats["rejected_by_reason"].values()) == len(rejected)
    assert all(row["reason"] for row in rejected)
    for name, pairs in splits.items():
        assert stats["splits"][name]["pairs"] == len(pairs)

    texts = {doc: (language, text) for doc, language, text in CHUNKS}
    for pair in accepted:
        assert FIELDS <= set(pair)
        assert (pair["language"], pair["context"]) == texts[pair["doc_id"]]
        assert pair["type"] in ("factual", "conceptual", "comparison", "unanswerable")
        assert pair["answerable"] == (pair["type"] != "unanswerable")
        if not pair["answerable"]:
            assert pair["answer"] == REFUSALS[pair["language"]]
        assert len(pair["question"]) <= settings.question_max_chars
    documents = {name: {pair["doc_id"] for pair in pairs} for name, pairs in splits.items()}
    assert not documents["train"] & documents["val"]
    assert not documents["train"] & documents["test"]
    assert not documents["val"] & documents["test"]
