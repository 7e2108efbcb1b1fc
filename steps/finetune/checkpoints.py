"""Training checkpoints in the artifact store: publish one, find the newest that verifies, and the Trainer
callback that decides when (every N steps, every M minutes, at once on SIGTERM).

A checkpoint is the Trainer's own `checkpoint-<step>` folder (adapter, optimizer, scheduler, RNG states,
trainer_state.json with the global step that positions the data), published atomically like every artifact at
`<checkpoints_uri>/<step>`. An index (`INDEX.json`, written after each publish) lists the published steps,
since the store cannot list prefixes; a kill between a publish and the index update only loses that newest one.
"""

import json
import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Self

from steps.common.storage import ArtifactNotFound, ArtifactStore, CorruptArtifact, StorageError, join_uri
from steps.finetune.callbacks import TrainerEvents

log = logging.getLogger(__name__)
INDEX_NAME = "INDEX.json"


class CheckpointStore:
    """The published checkpoints of one finetune execution (one run id, one output place)."""

    def __init__(self, store: ArtifactStore, uri: str) -> None:
        self.store = store
        self.uri = uri

    def steps(self) -> list[int]:
        """Published steps, oldest first; [] before the first checkpoint."""
        try:
            raw = self.store.read_bytes(join_uri(self.uri, INDEX_NAME))
        except StorageError:
            return []
        return sorted({int(step) for step in json.loads(raw)["steps"]})

    def publish(self, local_dir: Path, step: int) -> str:
        uri = join_uri(self.uri, f"{step:09d}")
        self.store.publish_dir(local_dir, uri)
        steps = sorted({*self.steps(), step})
        self.store.write_bytes(join_uri(self.uri, INDEX_NAME), json.dumps({"steps": steps}).encode())
        return uri

    def latest(self, cache_dir: Path) -> Path | None:
        """A local copy of the newest checkpoint whose manifest exists and whose files match it; a corrupt or
        partial one is skipped (logged) for the one before it. None: start from scratch."""
        for step in reversed(self.steps()):
            uri = join_uri(self.uri, f"{step:09d}")
            try:
                local = self.store.materialize(uri, cache_dir)
            except (ArtifactNotFound, CorruptArtifact) as exc:
                log.warning("checkpoint at step %d is not usable, trying the previous one: %s", step, exc)
                continue
            log.info("resuming from the checkpoint at step %d (%s)", step, uri)
            return local
        return None


class StopRequest:
    """Turns SIGTERM (a spot node's notice, a pod's deletion) into a flag the training loop polls, so the step
    checkpoints after the optimizer step in progress instead of dying mid-way."""

    def __init__(self, active: bool = True) -> None:
        # Python delivers signals to the main thread only; a step run from another thread (a test) keeps the
        # default SIGTERM behaviour.
        self.active = active and threading.current_thread() is threading.main_thread()
        self.signalled = False
        self._previous: Any = None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %d: checkpointing after the current step, then exiting for a retry", signum)
        self.signalled = True

    def __enter__(self) -> Self:
        if self.active:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGTERM, self._previous)


class CheckpointCallback(TrainerEvents):
    """Asks the Trainer to save every `every_steps` steps, every `every_minutes`, or at once when stopped; then
    publishes the folder it saved. When stopped it also ends training (the step then exits for a retry)."""

    def __init__(self, checkpoints: CheckpointStore, every_steps: int | None, every_minutes: float | None,
                 stop: StopRequest) -> None:
        self.checkpoints = checkpoints
        self.every_steps = every_steps
        self.every_s = every_minutes * 60 if every_minutes else None
        self.stop = stop
        self.published_step: int | None = None
        self._last_save = time.monotonic()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last_save = time.monotonic()  # loading the model is not training time at risk

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        due_steps = self.every_steps is not None and state.global_step % self.every_steps == 0
        due_time = self.every_s is not None and time.monotonic() - self._last_save >= self.every_s
        if due_steps or due_time or self.stop.signalled:
            control.should_save = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        uri = self.checkpoints.publish(folder, state.global_step)
        self.published_step = state.global_step
        self._last_save = time.monotonic()
        log.info("checkpoint at step %d published to %s", state.global_step, uri)
        if self.stop.signalled:
            control.should_training_stop = True
