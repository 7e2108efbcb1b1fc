"""The published QA files: pairs land in their document's split, rejected pairs keep their reason, stats count."""

import json
from collections import Counter
from pathlib import Path

from steps.common.qa_dataset import QAPair
from steps.generate_qa.artifact import write_artifact
from steps.generate_qa.generate import ChunkTally, Generated, RejectedPair


def pair(doc: str, question: str, answerable: bool = True) -> QAPair:
    return QAPair(question=question, answer="Sie öffnet um 7:30 Uhr.", type="factual" if answerable else
                  "unanswerable", language="de", chunk_id=f"{doc}#0", doc_id=doc, answerable=answerable,
                  context="Die Kantine öffnet um 7:30 Uhr.")


def test_files_and_stats_agree(tmp_path: Path) -> None:
    generated = Generated(
        accepted=[pair("a", "Wann öffnet die Kantine?"), pair("a", "Was kostet es?", False),
                  pair("b", "Wann schließt sie?"), pair("c", "Wer kocht?")],
        rejected=[RejectedPair(reason="truncated", type="factual", answerable=True, language="de",
                               chunk_id="c#0", doc_id="c", raw='{"question": "Wann')],
        per_chunk={"a#0": ChunkTally(3, 2, Counter(too_few_sentences=1)), "b#0": ChunkTally(1, 1),
                   "c#0": ChunkTally(3, 1, Counter(truncated=1, too_few_sentences=1))},
    )
    generated.counts.update(requests=5, completion_tokens=123)
    stats = write_artifact(generated, {"a": "train", "b": "val", "c": "test"}, n_chunks=3, directory=tmp_path)

    lines = {name: (tmp_path / f"qa_{name}.jsonl").read_text(encoding="utf-8").splitlines()
             for name in ("train", "val", "test", "rejected")}
    assert [len(v) for v in lines.values()] == [2, 1, 1, 1]
    assert json.loads(lines["train"][0])["question"] == "Wann öffnet die Kantine?"
    assert "öffnet" in lines["train"][0]  # UTF-8, not \\u escapes
    assert json.loads(lines["rejected"][0])["reason"] == "truncated"
    assert stats == json.loads((tmp_path / "stats.json").read_text())
    assert (stats["chunks"], stats["requests"], stats["accepted"], stats["rejected"]) == (3, 5, 4, 1)
    assert stats["splits"]["train"] == {"pairs": 2, "documents": 1, "unanswerable": 1}
    assert stats["rejected_by_reason"] == {"truncated": 1}
    assert stats["accepted_by_type"] == {"factual": 3, "unanswerable": 1}
    assert stats["shortfall"] == {
        "requested": 7, "produced": 4, "by_reason": {"too_few_sentences": 2, "truncated": 1},
        "per_chunk": {"a#0": {"requested": 3, "produced": 2, "by_reason": {"too_few_sentences": 1}},
                      "b#0": {"requested": 1, "produced": 1, "by_reason": {}},
                      "c#0": {"requested": 3, "produced": 1, "by_reason": {"too_few_sentences": 1, "truncated": 1}}},
    }
