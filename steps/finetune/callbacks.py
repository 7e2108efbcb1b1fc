"""Trainer callbacks: Argo progress, and a guard proving gradient checkpointing really runs.

They duck-type transformers' `TrainerCallback` instead of subclassing it, so that importing this module
does not import transformers: the Trainer calls every event by name (`CallbackHandler.call_event` does
`getattr(callback, event)(args, state, control, **kwargs)` and keeps `control` when it gets None).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steps.common.progress import Progress


def _ignore(*_args: Any, **_kwargs: Any) -> None:
    return None


class TrainerEvents:
    """Every Trainer event (`on_*`) a subclass does not define is a no-op, as in `TrainerCallback`."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("on_"):
            return _ignore
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class ProgressCallback(TrainerEvents):
    """`step/max_steps` to $ARGO_PROGRESS_FILE after every optimizer step (from the resumed step on a resume)."""

    def __init__(self) -> None:
        self.progress: Progress | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.progress = Progress(total=state.max_steps)
        self.progress.advance(state.global_step)  # a resumed run starts where its checkpoint left off

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.advance()


@dataclass
class CheckpointingObservation:
    training: bool
    checkpointing: bool
    grad_enabled: bool


class CheckpointingGuard(TrainerEvents):
    """Fails the run unless the first training forward pass runs checkpointed layers in train mode.

    `gradient_checkpointing=True` alone proves nothing: transformers' layers checkpoint only when
    `self.training` is also true, so a model left in eval mode trains with full activations (and dropout
    off) without any warning. We look at a decoder layer as the forward pass reaches it.
    """

    def __init__(self) -> None:
        self.observed: CheckpointingObservation | None = None
        self._handle: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        from transformers.modeling_layers import GradientCheckpointingLayer

        layer = next((m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)), None)
        if layer is None:
            raise RuntimeError(f"{type(model).__name__} has no checkpointable layers; "
                               "set finetune.gradient_checkpointing: false for this base model")
        self._handle = layer.register_forward_pre_hook(self._observe)

    def _observe(self, module: Any, _inputs: Any) -> None:
        import torch

        if self.observed is None:
            self.observed = CheckpointingObservation(
                module.training, bool(module.gradient_checkpointing), torch.is_grad_enabled())

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._handle is None:
            return
        self._handle.remove()
        self._handle = None
        seen = self.observed
        if seen is None or not (seen.training and seen.checkpointing and seen.grad_enabled):
            raise RuntimeError(f"gradient checkpointing is not active in the first training step ({seen}); "
                               "the model must be in train mode with checkpointing enabled")
