"""Checkpoint selection and the save schedule, without a model: the newest complete checkpoint wins, a
corrupt or partial one is skipped for the one before it."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from steps.common.manifest import MANIFEST_NAME
from steps.common.residency import ResidencyPolicy
from steps.common.storage import ArtifactStore, StorageSettings, local_path
from steps.finetune.checkpoints import CheckpointCallback, CheckpointStore, StopRequest
from steps.finetune.settings import FinetuneSettings


@pytest.fixture
def checkpoints(tmp_path: Path) -> CheckpointStore:
    store = ArtifactStore(StorageSettings(artifact_root=tmp_path.as_uri()), ResidencyPolicy())
    return CheckpointStore(store, (tmp_path / "runs" / "r" / "finetune" / "checkpoints").as_uri())


def _publish(checkpoints: CheckpointStore, tmp_path: Path, step: int) -> Path:
    folder = tmp_path / f"checkpoint-{step}"
    folder.mkdir()
    (folder / "optimizer.pt").write_bytes(f"state at {step}".encode())
    return local_path(checkpoints.publish(folder, step))


def test_no_checkpoint_means_a_fresh_start(checkpoints, tmp_path) -> None:
    assert checkpoints.steps() == [] and checkpoints.latest(tmp_path / "cache") is None


def test_the_newest_complete_checkpoint_is_chosen(checkpoints, tmp_path) -> None:
    for step in (2, 4, 6):
        _publish(checkpoints, tmp_path, step)
    assert checkpoints.steps() == [2, 4, 6]
    latest = checkpoints.latest(tmp_path / "cache")
    assert latest is not None and (latest / "optimizer.pt").read_text() == "state at 6"


def test_a_corrupt_or_partial_checkpoint_falls_back_to_the_previous_one(checkpoints, tmp_path) -> None:
    first, second, third = (_publish(checkpoints, tmp_path, step) for step in (2, 4, 6))
    (third / "optimizer.pt").write_bytes(b"flipped bits")  # digest mismatch
    (second / MANIFEST_NAME).unlink()  # killed before its manifest: not published
    latest = checkpoints.latest(tmp_path / "cache")
    assert latest == first and (latest / "optimizer.pt").read_text() == "state at 2"
    (first / "optimizer.pt").unlink()  # a file the manifest lists is missing
    assert checkpoints.latest(tmp_path / "cache") is None


def _state(step: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step)


def _control() -> SimpleNamespace:
    return SimpleNamespace(should_save=False, should_training_stop=False)


def test_saves_every_n_steps_and_at_once_when_stopped(checkpoints) -> None:
    stop = StopRequest(active=False)
    callback = CheckpointCallback(checkpoints, every_steps=3, every_minutes=None, stop=stop)
    due = []
    for step in range(1, 8):
        control = _control()
        callback.on_step_end(None, _state(step), control)
        due.append(control.should_save)
    assert due == [False, False, True, False, False, True, False]
    stop.signalled = True
    control = _control()
    callback.on_step_end(None, _state(8), control)
    assert control.should_save


def test_saves_when_the_time_is_due(checkpoints, monkeypatch) -> None:
    callback = CheckpointCallback(checkpoints, every_steps=None, every_minutes=1.0, stop=StopRequest(active=False))
    control = _control()
    callback.on_step_end(None, _state(1), control)
    assert not control.should_save
    callback._last_save -= 61
    callback.on_step_end(None, _state(2), control)
    assert control.should_save


def test_on_save_publishes_and_stops_training_when_signalled(checkpoints, tmp_path) -> None:
    folder = tmp_path / "out" / "checkpoint-5"
    folder.mkdir(parents=True)
    (folder / "rng_state.pth").write_bytes(b"rng")
    stop = StopRequest(active=False)
    callback = CheckpointCallback(checkpoints, every_steps=5, every_minutes=None, stop=stop)
    args = SimpleNamespace(output_dir=str(tmp_path / "out"))
    control = _control()
    callback.on_save(args, _state(5), control)
    assert checkpoints.steps() == [5] and not control.should_training_stop
    stop.signalled = True
    callback.on_save(args, _state(5), control)
    assert control.should_training_stop and callback.published_step == 5


def test_checkpoint_settings_are_validated() -> None:
    settings = FinetuneSettings()
    assert (settings.checkpoint_every_steps, settings.checkpoint_every_minutes) == (200, 30.0)
    assert FinetuneSettings(checkpoint_every_steps=None).checkpoint_every_steps is None
    for bad in ({"checkpoint_every_steps": 0}, {"checkpoint_every_minutes": 0}, {"checkpoint_every_minutes": -5}):
        with pytest.raises(ValidationError):
            FinetuneSettings(**bad)
