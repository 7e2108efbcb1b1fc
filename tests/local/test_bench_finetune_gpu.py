"""bench/finetune_gpu.py end to end on CPU with the tiny shape: both loops train and are measured.

The GPU numbers themselves need a CUDA machine (QLoRA, bf16); this proves the benchmark's code paths (random
model built and saved, the plain loop, the finetune step's packed trl loop, the token accounting)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_shape_runs_both_loops_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "finetune_gpu.py"), "--shape", "tiny", "--mode", "lora",
         "--steps", "2", "--warmup", "1", "--seq", "512", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"plain (padded batches)", "eurolora (packed, trl)"}
    for row in rows.values():
        assert row["tokens"] > 0 and row["seconds"] > 0
    # Two timed steps of 4 samples of 60-600 tokens (plain); 4 packed rows of <= 512 tokens (eurolora).
    assert 2 * 4 * 60 <= rows["plain (padded batches)"]["tokens"] <= 2 * 4 * 600
    assert rows["eurolora (packed, trl)"]["tokens"] <= 2 * 4 * 512
    assert "useful tok/s" in result.stdout and "speedup" in result.stdout
