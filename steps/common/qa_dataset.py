"""The QA dataset artifact generate_qa publishes: one jsonl per split, one `QAPair` per line.

generate_qa writes it; finetune trains on the train and val splits; the judge and the canary's shadow set
read the test split.
"""

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
REJECTED_FILE = "qa_rejected.jsonl"


def split_file(split: Split) -> str:
    return f"qa_{split}.jsonl"


TEST_FILE = split_file("test")


class QAPair(BaseModel):
    """One line of qa_{train,val,test}.jsonl (fields a reader does not know are ignored)."""

    question: str
    answer: str  # the reference answer (the refusal sentence for unanswerable questions)
    type: str
    language: str
    chunk_id: str
    doc_id: str
    answerable: bool
    context: str  # the chunk text the question was generated from, so the judge and finetune can ground on it


def write_pairs(path: Path, rows: Iterable[BaseModel]) -> None:
    """One JSON object per line (QA pairs, or generate_qa's rejected pairs)."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(row.model_dump_json() + "\n")


def load_pairs(path: Path, max_items: int | None = None, seed: int = 0) -> list[QAPair]:
    """All pairs, or a seeded sample of `max_items` in file order; every bad line is reported together."""
    items: list[QAPair] = []
    problems: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                items.append(QAPair.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError) as exc:
                problems.append(f"line {number}: {_short(exc)}")
    if problems:
        raise ValueError(f"{path.name} has {len(problems)} invalid line(s), fix generate_qa's output:\n"
                         + "\n".join(problems[:20]))
    if not items:
        raise ValueError(f"{path.name} has no test items: generate_qa must hold out a test split")
    if max_items is not None and max_items < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), max_items))
        items = [items[i] for i in keep]
    return items


def _short(exc: Exception) -> str:
    # Field names and error types only: never echo the (possibly personal) text of a line.
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg} at column {exc.colno})"
    return str(exc)
