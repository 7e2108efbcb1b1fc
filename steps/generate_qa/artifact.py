"""Write the published QA artifact: one jsonl per split, the rejected pairs, and stats.json (counts only)."""

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from steps.common.qa_dataset import REJECTED_FILE, SPLITS, QAPair, Split, split_file, write_pairs
from steps.generate_qa.generate import ChunkTally, Generated

STATS_FILE = "stats.json"


def write_artifact(generated: Generated, assignment: dict[str, Split], n_chunks: int,
                   directory: Path) -> dict[str, Any]:
    """Write every file; returns the stats written to stats.json."""
    by_split: dict[Split, list[QAPair]] = {split: [] for split in SPLITS}
    for pair in generated.accepted:
        by_split[assignment[pair.doc_id]].append(pair)
    for split, pairs in by_split.items():
        write_pairs(directory / split_file(split), pairs)
    write_pairs(directory / REJECTED_FILE, generated.rejected)
    stats = {
        "chunks": n_chunks,
        **dict(sorted(generated.counts.items())),
        "accepted": len(generated.accepted),
        "rejected": len(generated.rejected),
        "rejected_by_reason": _count(r.reason for r in generated.rejected),
        "splits": {split: {"pairs": len(pairs), "documents": len({p.doc_id for p in pairs}),
                           "unanswerable": sum(not p.answerable for p in pairs)}
                   for split, pairs in by_split.items()},
        "accepted_by_language": _count(p.language for p in generated.accepted),
        "accepted_by_type": _count(p.type for p in generated.accepted),
        "shortfall": _shortfall(generated.per_chunk),
    }
    (directory / STATS_FILE).write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    return stats


def _shortfall(per_chunk: dict[str, ChunkTally]) -> dict[str, Any]:
    """Pairs asked for (pairs_per_chunk + unanswerable_per_chunk per chunk) against pairs produced, in
    total and per chunk, with the reason for each missing pair."""
    total: Counter[str] = Counter()
    for tally in per_chunk.values():
        total.update(tally.shortfall)
    return {
        "requested": sum(tally.requested for tally in per_chunk.values()),
        "produced": sum(tally.produced for tally in per_chunk.values()),
        "by_reason": dict(sorted(total.items())),
        "per_chunk": {chunk_id: {"requested": tally.requested, "produced": tally.produced,
                                 "by_reason": dict(sorted(tally.shortfall.items()))}
                      for chunk_id, tally in sorted(per_chunk.items())},
    }


def _count(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))
