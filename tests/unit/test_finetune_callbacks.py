"""The callbacks on a tiny random Llama (real transformers, no weights): the checkpointing guard passes only
when a decoder layer runs checkpointed in train mode, and fails the run otherwise."""

import pytest

from steps.finetune.callbacks import CheckpointingGuard, ProgressCallback


def tiny_llama(checkpointing: bool, training: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    model = LlamaForCausalLM(config)
    if checkpointing:
        model.gradient_checkpointing_enable()
    return model.train(training)


def first_step(guard: CheckpointingGuard, model) -> None:
    """What the Trainer does around the first optimizer step, with the events the guard listens to."""
    import torch

    guard.on_train_begin(None, None, None, model=model)
    ids = torch.randint(0, 64, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    guard.on_step_end(None, None, None)


def test_guard_accepts_checkpointed_layers_in_train_mode() -> None:
    guard = CheckpointingGuard()
    first_step(guard, tiny_llama(checkpointing=True, training=True))
    assert vars(guard.observed) == {"training": True, "checkpointing": True, "grad_enabled": True}


@pytest.mark.parametrize(("checkpointing", "training", "seen"), [
    (True, False, "training=False, checkpointing=True"),  # eval mode: layers skip checkpointing silently
    (False, True, "training=True, checkpointing=False"),
])
def test_guard_fails_the_run_when_checkpointing_is_not_active(checkpointing: bool, training: bool,
                                                              seen: str) -> None:
    guard = CheckpointingGuard()
    with pytest.raises(RuntimeError, match=f"gradient checkpointing is not active.*{seen}"):
        first_step(guard, tiny_llama(checkpointing=checkpointing, training=training))


def test_guard_refuses_a_model_without_checkpointable_layers() -> None:
    import torch

    with pytest.raises(RuntimeError, match="has no checkpointable layers"):
        CheckpointingGuard().on_train_begin(None, None, None, model=torch.nn.Linear(2, 2))


def test_events_the_callbacks_do_not_define_are_no_ops_and_other_names_fail() -> None:
    callback = ProgressCallback()
    assert callback.on_log(None, None, None, logs={}) is None  # the Trainer keeps its control object
    with pytest.raises(AttributeError, match="no attribute 'progress_total'"):
        _ = callback.progress_total
