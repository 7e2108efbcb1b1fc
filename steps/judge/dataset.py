"""The held-out test set written by generate_qa (`qa_test.jsonl`), read and validated at once."""

import json
import random
from pathlib import Path

from pydantic import BaseModel, ValidationError

TEST_FILE = "qa_test.jsonl"


class QAItem(BaseModel):
    model_config = {"extra": "ignore"}  # generate_qa may record more than the judge needs
    question: str
    answer: str  # the reference answer (the refusal sentence for unanswerable questions)
    type: str
    language: str
    chunk_id: str
    doc_id: str
    answerable: bool
    context: str  # the chunk the question was generated from


def load_items(path: Path, max_items: int | None = None, seed: int = 0) -> list[QAItem]:
    """All items, or a seeded sample of `max_items` in file order; every bad line is reported together."""
    items: list[QAItem] = []
    problems: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                items.append(QAItem.model_validate(json.loads(line)))
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
