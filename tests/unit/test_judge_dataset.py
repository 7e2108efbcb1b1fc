"""Reading qa_test.jsonl: every bad line reported at once (without its text), seeded sampling."""

import json
from pathlib import Path

import pytest

from steps.common.qa_dataset import load_pairs


def row(i: int) -> dict:
    return {"question": f"secret question {i}", "answer": "a", "type": "factual", "language": "en",
            "chunk_id": f"c{i}", "doc_id": "d", "answerable": i % 2 == 0, "context": "ctx", "extra": 1}


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sample_is_seeded_and_keeps_file_order(tmp_path: Path) -> None:
    path = write(tmp_path / "qa_test.jsonl", [json.dumps(row(i)) for i in range(10)] + [""])
    assert [i.chunk_id for i in load_pairs(path)] == [f"c{i}" for i in range(10)]
    sample = [i.chunk_id for i in load_pairs(path, max_items=4, seed=3)]
    assert sample == [i.chunk_id for i in load_pairs(path, max_items=4, seed=3)]
    assert len(sample) == 4 and sample == sorted(sample, key=lambda c: int(c[1:]))
    assert sample != [i.chunk_id for i in load_pairs(path, max_items=4, seed=4)]


def test_all_bad_lines_are_reported_without_their_text(tmp_path: Path) -> None:
    missing = row(1)
    del missing["context"]
    path = write(tmp_path / "qa_test.jsonl", [json.dumps(row(0)), "{not json secret", json.dumps(missing)])
    with pytest.raises(ValueError) as info:
        load_pairs(path)
    message = str(info.value)
    assert "2 invalid line(s)" in message and "line 2: not JSON" in message and "line 3: context" in message
    assert "secret" not in message


def test_an_empty_test_set_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no test items"):
        load_pairs(write(tmp_path / "qa_test.jsonl", [""]))
