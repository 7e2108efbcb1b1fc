"""A finetune step stopped in the middle of training (SIGTERM: it checkpoints and exits 75; SIGKILL: no last
checkpoint) and then retried with the same run id resumes from its newest checkpoint and ends with the same
loss curve and the same adapter weights as an uninterrupted run.

Tolerance: torch.allclose(atol=1e-6, rtol=0) for the adapter and 1e-6 for each loss; on CPU with the same seeds
the resumed run is expected to be bit-identical (RNG states, optimizer and data position are all restored)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.errors import EXIT_TRANSIENT
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings, local_path
from steps.finetune import FinetuneInputs
from steps.finetune.settings import FinetuneSettings
from tests.local.test_finetune import publish_qa, qa_rows

pytestmark = pytest.mark.slow
STEPS = 4  # 4 train rows, batch 2: two epochs, so a resume also crosses an epoch boundary


def _inputs(root: Path, every_steps: int) -> FinetuneInputs:
    context = RuntimeContext(run_id="resume", storage=StorageSettings(artifact_root=root.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(root / "scratch"))
    rows = qa_rows()
    settings = FinetuneSettings(max_steps=STEPS, batch_size=2, seed=11, checkpoint_every_steps=every_steps,
                                checkpoint_every_minutes=None)
    return FinetuneInputs(context=context, settings=settings, base_model="embedded",
                          qa_uri=publish_qa(context, rows[:4], rows[4:]),
                          registry=RegistrySettings(tracking_uri=f"sqlite:///{root}/mlflow.db", experiment="ft"))


def _start(root: Path, inputs: FinetuneInputs) -> subprocess.Popen:
    (root / "in.json").write_text(inputs.model_dump_json())
    env = {**os.environ, "ARGO_PROGRESS_FILE": str(root / "progress"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipelines.step_process", "steps.finetune:run",
                             str(root / "in.json"), str(root / "out.json")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, expected_rc: int = 0) -> str:
    log, _ = process.communicate(timeout=600)
    assert process.returncode == expected_rc, log[-4000:]
    return log


def _wait_for(process: subprocess.Popen, condition, what: str) -> None:
    deadline = time.monotonic() + 600
    while not condition():
        assert process.poll() is None, f"the step ended before {what}: {process.communicate()[0][-4000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _progress(root: Path) -> int:
    text = (root / "progress").read_text() if (root / "progress").exists() else "0/0"
    return int(text.split("/")[0] or 0)


def _index(root: Path) -> list[int]:
    index = root / "runs" / "resume" / "finetune" / "checkpoints" / "INDEX.json"
    return json.loads(index.read_text())["steps"] if index.exists() else []


def _result(root: Path) -> tuple[list[dict], dict]:
    from safetensors.torch import load_file

    out = json.loads((root / "out.json").read_text())
    metrics = json.loads((local_path(out["metrics_uri"]) / "train_metrics.json").read_text())
    return metrics["loss_curve"], load_file(local_path(out["adapter_uri"]) / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> tuple[list[dict], dict]:
    root = tmp_path_factory.mktemp("uninterrupted")
    _finish(_start(root, _inputs(root, every_steps=2)))
    assert _index(root) == [2, 4]  # periodic checkpoints, published while training ran
    return _result(root)


def _assert_same(resumed: tuple[list[dict], dict], reference: tuple[list[dict], dict]) -> None:
    import torch

    (curve, weights), (ref_curve, ref_weights) = resumed, reference
    assert [p["step"] for p in curve] == [p["step"] for p in ref_curve] == list(range(1, STEPS + 1))
    assert [p["loss"] for p in curve] == pytest.approx([p["loss"] for p in ref_curve], abs=1e-6)
    assert weights.keys() == ref_weights.keys()
    for name, tensor in weights.items():
        assert torch.allclose(tensor, ref_weights[name], atol=1e-6, rtol=0), name


def test_sigterm_checkpoints_exits_transient_and_the_retry_resumes(tmp_path, uninterrupted) -> None:
    inputs = _inputs(tmp_path, every_steps=100)  # no periodic checkpoint: only the one SIGTERM asks for
    process = _start(tmp_path, inputs)
    _wait_for(process, lambda: _progress(tmp_path) >= 1, "the first training step")
    process.send_signal(signal.SIGTERM)
    log = _finish(process, EXIT_TRANSIENT)
    [stopped_at] = _index(tmp_path)
    assert 1 <= stopped_at < STEPS and f"stopped by SIGTERM at step {stopped_at}/{STEPS}" in log
    assert not (tmp_path / "out.json").exists()
    log = _finish(_start(tmp_path, inputs))
    assert f"resuming from the checkpoint at step {stopped_at}" in log, log[-3000:]
    assert (tmp_path / "progress").read_text() == f"{STEPS}/{STEPS}"  # counted on from the resumed step
    _assert_same(_result(tmp_path), uninterrupted)


def _killed_after_two_checkpoints(root: Path, inputs: FinetuneInputs) -> list[int]:
    """SIGKILL (no chance to checkpoint) once two periodic checkpoints are published; returns their steps."""
    process = _start(root, inputs)
    _wait_for(process, lambda: 2 <= max(_index(root), default=0), "the second checkpoint")
    process.kill()
    process.communicate(timeout=60)
    return _index(root)


def test_sigkill_resumes_from_the_last_periodic_checkpoint(tmp_path, uninterrupted) -> None:
    inputs = _inputs(tmp_path, every_steps=1)
    published = _killed_after_two_checkpoints(tmp_path, inputs)
    assert max(published) < STEPS, "the run finished before it was killed"
    log = _finish(_start(tmp_path, inputs))
    assert f"resuming from the checkpoint at step {max(published)}" in log, log[-3000:]
    assert _index(tmp_path) == list(range(1, STEPS + 1))  # resumed after the last one, not from zero
    _assert_same(_result(tmp_path), uninterrupted)


def test_a_damaged_newest_checkpoint_is_skipped_on_resume(tmp_path, uninterrupted) -> None:
    inputs = _inputs(tmp_path, every_steps=1)
    newest = max(_killed_after_two_checkpoints(tmp_path, inputs))
    folder = tmp_path / "runs" / "resume" / "finetune" / "checkpoints" / f"{newest:09d}"
    (folder / "optimizer.pt").write_bytes(b"torn write")
    log = _finish(_start(tmp_path, inputs))
    assert f"checkpoint at step {newest} is not usable" in log
    assert f"resuming from the checkpoint at step {newest - 1}" in log, log[-3000:]
    _assert_same(_result(tmp_path), uninterrupted)
