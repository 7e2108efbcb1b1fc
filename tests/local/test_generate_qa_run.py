"""generate_qa end to end after ingest: the session's demo run (shipped corpus and config, embedded model,
transformers engine), checked file by file against its chunks, its filter's rules and its stats."""

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from steps.common.grading import REFUSALS
from steps.common.text import words
from steps.generate_qa.filters import Reason, grounding, unknown_to
from steps.generate_qa.generate import TOO_FEW_SENTENCES
from tests.fixtures.demo_steps import DemoQA

pytestmark = pytest.mark.slow

FIELDS = {"question", "answer", "type", "language", "chunk_id", "doc_id", "answerable", "context"}
SPLITS = ("train", "val", "test")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def published(demo_qa: DemoQA, tmp_path_factory: pytest.TempPathFactory) -> dict:
    ingest = demo_qa.ingest
    chunks_dir = ingest.context.store().materialize(ingest.outputs.chunks_uri, tmp_path_factory.mktemp("chunks"))
    return {
        "splits": {name: read_jsonl(demo_qa.directory / f"qa_{name}.jsonl") for name in SPLITS},
        "rejected": read_jsonl(demo_qa.directory / "qa_rejected.jsonl"),
        "stats": json.loads((demo_qa.directory / "stats.json").read_text()),
        "chunks": {row["chunk_id"]: row for row in pq.read_table(chunks_dir / "chunks.parquet").to_pylist()},
    }


def test_outputs_name_the_published_files(demo_qa: DemoQA, published: dict) -> None:
    out, context = demo_qa.outputs, demo_qa.ingest.context
    assert out.qa_uri == context.output_uri("generate_qa", "qa")
    assert out.dataset_digest == context.store().read_manifest(out.qa_uri).digest
    assert sorted(p.name for p in demo_qa.directory.iterdir()) == [
        "MANIFEST.json", "qa_rejected.jsonl", "qa_test.jsonl", "qa_train.jsonl", "qa_val.jsonl", "stats.json"]
    splits = published["splits"]
    assert (out.n_train, out.n_val, out.n_test, out.n_rejected) == (
        len(splits["train"]), len(splits["val"]), len(splits["test"]), len(published["rejected"]))


def test_pairs_in_every_language_each_split_non_empty_and_document_disjoint(published: dict) -> None:
    splits = published["splits"]
    accepted = [pair for pairs in splits.values() for pair in pairs]
    assert {pair["language"] for pair in accepted} == {"en", "de", "fr"}
    assert all(splits[name] for name in SPLITS), {name: len(pairs) for name, pairs in splits.items()}
    documents = {name: {pair["doc_id"] for pair in pairs} for name, pairs in splits.items()}
    assert not documents["train"] & documents["val"]
    assert not documents["train"] & documents["test"]
    assert not documents["val"] & documents["test"]


def test_every_pair_is_its_chunks_and_passes_the_filter_rules(demo_qa: DemoQA, published: dict) -> None:
    settings = demo_qa.ingest.config.generate_qa
    accepted = [pair for pairs in published["splits"].values() for pair in pairs]
    for pair in accepted:
        assert FIELDS <= set(pair), pair
        chunk = published["chunks"][pair["chunk_id"]]
        assert (pair["doc_id"], pair["language"], pair["context"]) == (chunk["doc_id"], chunk["language"],
                                                                       chunk["text"])
        assert settings.question_min_chars <= len(pair["question"]) <= settings.question_max_chars
        assert pair["answerable"] == (pair["type"] != "unanswerable")
    answerable = [pair for pair in accepted if pair["answerable"]]
    unanswerable = [pair for pair in accepted if not pair["answerable"]]
    assert answerable and unanswerable
    assert {pair["type"] for pair in answerable} <= set(settings.question_types)
    for pair in answerable:
        assert grounding(pair["answer"], pair["context"]) >= settings.grounding_threshold
        assert settings.answer_min_chars <= len(pair["answer"]) <= settings.answer_max_chars
    for pair in unanswerable:
        assert pair["answer"] == REFUSALS[pair["language"]]
        # It asks about something its chunk never mentions.
        assert unknown_to(set(words(pair["question"])), set(words(pair["context"])))
    assert len({pair["question"].casefold() for pair in accepted}) == len(accepted)


def test_rejected_pairs_keep_their_reason(published: dict) -> None:
    rejected = published["rejected"]
    assert rejected
    assert {row["reason"] for row in rejected} <= {reason.value for reason in Reason}
    assert all(row["chunk_id"] in published["chunks"] for row in rejected)


def test_stats_count_what_the_files_hold(demo_qa: DemoQA, published: dict) -> None:
    settings = demo_qa.ingest.config.generate_qa
    stats, splits, rejected = published["stats"], published["splits"], published["rejected"]
    accepted = [pair for pairs in splits.values() for pair in pairs]
    assert stats["chunks"] == settings.max_chunks  # the demo has more chunks than the cap
    assert stats["requests"] == len(accepted) + len(rejected)  # nothing silently dropped
    assert (stats["accepted"], stats["rejected"]) == (len(accepted), len(rejected))
    assert stats["rejected_by_reason"] == dict(Counter(row["reason"] for row in rejected))
    assert stats["accepted_by_language"] == dict(Counter(pair["language"] for pair in accepted))
    assert stats["accepted_by_type"] == dict(Counter(pair["type"] for pair in accepted))
    for name, pairs in splits.items():
        assert stats["splits"][name] == {"pairs": len(pairs), "documents": len({p["doc_id"] for p in pairs}),
                                         "unanswerable": sum(not p["answerable"] for p in pairs)}

    shortfall = stats["shortfall"]
    per_request = settings.pairs_per_chunk + settings.unanswerable_per_chunk
    assert shortfall["requested"] == stats["chunks"] * per_request
    assert shortfall["produced"] == len(accepted)
    assert sum(shortfall["by_reason"].values()) == shortfall["requested"] - shortfall["produced"]
    not_planned = shortfall["by_reason"].get(TOO_FEW_SENTENCES, 0)
    assert stats["requests"] == shortfall["requested"] - not_planned
    assert {k: v for k, v in shortfall["by_reason"].items() if k != TOO_FEW_SENTENCES} == \
        stats["rejected_by_reason"]
    per_chunk = shortfall["per_chunk"]
    assert len(per_chunk) == stats["chunks"] and set(per_chunk) <= set(published["chunks"])
    produced = Counter(pair["chunk_id"] for pair in accepted)
    missing = Counter(row["chunk_id"] for row in rejected)
    for chunk_id, tally in per_chunk.items():
        assert tally["requested"] == per_request
        assert tally["produced"] == produced[chunk_id]
        assert sum(tally["by_reason"].values()) == per_request - produced[chunk_id]
        assert sum(n for k, n in tally["by_reason"].items() if k != TOO_FEW_SENTENCES) == missing[chunk_id]
