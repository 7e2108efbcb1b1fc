"""The `vllm` engine inside a step process, started the way the local runner starts one (`python -m
pipelines.step_process`): vLLM spawns its engine processes, which re-import the step's entry module, and the
step must still run once, answer, and leave no engine process behind when it exits."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from tests.fixtures.demo_steps import step_context

pytestmark = pytest.mark.slow


def processes_marked(mark: str) -> list[psutil.Process]:
    """Live processes whose environment carries `mark` (inherited by everything the step spawned)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("EUROLORA_TEST_MARK") == mark and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_a_step_process_generates_with_vllm_and_leaves_no_engine_process(embedded_model_dir: Path,
                                                                         tmp_path: Path) -> None:
    inputs = {"context": json.loads(step_context(tmp_path).model_dump_json()), "question": "Say hello.",
              "engine": {"kind": "vllm", "model": str(embedded_model_dir), "vllm": {"max_model_len": 256}}}
    (tmp_path / "in.json").write_text(json.dumps(inputs))
    mark = uuid.uuid4().hex
    env = {**os.environ, "EUROLORA_TEST_MARK": mark, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pipelines.step_process", "tests.toy_steps.generate:run",
                           str(tmp_path / "in.json"), str(tmp_path / "out.json")],
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = json.loads((tmp_path / "out.json").read_text())
    assert outputs["finish_reason"] in ("stop", "length") and outputs["answer"].strip()
    assert done.stderr.count("vllm engine: started") == 1  # the spawned children did not run the step again
    assert processes_marked(mark) == []
