"""Model loading (LoRA on CPU/GPU, QLoRA nf4 on CUDA) and the trl SFT run."""

import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from steps.common.errors import TransientError
from steps.finetune.callbacks import CheckpointingGuard, ProgressCallback
from steps.finetune.checkpoints import CheckpointCallback, CheckpointStore, StopRequest
from steps.finetune.settings import FinetuneSettings, LoraProfile

Mode = Literal["lora", "qlora"]
Device = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class Plan:
    device: Device
    mode: Mode


@dataclass
class TrainResult:
    loss_curve: list[tuple[int, float]]
    val_loss: float
    steps: int
    tokens: int
    seconds: float
    peak_memory_mb: float
    device: Device
    mode: Mode
    checkpointing: dict[str, bool] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def plan(settings: FinetuneSettings) -> Plan:
    """Device and mode, decided before any work starts; nf4 without CUDA is refused with the fix."""
    import torch

    cuda = torch.cuda.is_available()
    if settings.quantization == "nf4" and not cuda:
        raise ValueError("finetune.quantization=nf4 needs a CUDA GPU (bitsandbytes 4-bit on CPU trains silently "
                         "wrong); use quantization: none (or auto) on CPU")
    nf4 = settings.quantization == "nf4" or (settings.quantization == "auto" and cuda)
    return Plan(device="cuda" if cuda else "cpu", mode="qlora" if nf4 else "lora")


def load_model(model_dir: Path, run_plan: Plan, pad_token_id: int) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if run_plan.device == "cuda":
        kwargs = {"dtype": torch.bfloat16, "device_map": {"": torch.cuda.current_device()}}
    if run_plan.mode == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    model.config.pad_token_id = pad_token_id
    model.generation_config.pad_token_id = pad_token_id
    return model


def lora_config(profile: LoraProfile) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=profile.r, lora_alpha=profile.alpha, lora_dropout=profile.dropout,
                      target_modules=list(profile.target_modules), bias="none", task_type="CAUSAL_LM")


def sft_config(settings: FinetuneSettings, run_plan: Plan, output_dir: Path) -> Any:
    from trl import SFTConfig

    packed = settings.batching == "packed"
    return SFTConfig(
        output_dir=str(output_dir),
        seed=settings.seed,
        data_seed=settings.seed,
        max_steps=settings.max_steps or -1,
        num_train_epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accumulation,
        gradient_checkpointing=settings.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        # trl defaults to bf16 everywhere; bf16 autocast on CPU is slow and changes the numbers.
        bf16=run_plan.device == "cuda",
        use_cpu=run_plan.device == "cpu",
        max_length=settings.max_seq_len,
        packing=packed,
        packing_strategy="bfd",  # best-fit decreasing: rows of <= max_length, padding-free
        train_sampling_strategy="random" if packed else "group_by_length",
        logging_steps=1,  # one loss per optimizer step: the loss curve
        eval_strategy="no",
        save_strategy="no",  # CheckpointCallback decides when (steps, minutes, SIGTERM)
        save_total_limit=1,  # locally only the newest: the published ones live in the artifact store
        report_to="none",  # MLflow logging is ours (bounded, tagged), not the Trainer's callback
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def build_trainer(
    model_dir: Path, tokenizer: Any, train_ds: Any, val_ds: Any, settings: FinetuneSettings, run_plan: Plan,
    output_dir: Path, callbacks: list[Any] | None = None,
) -> Any:
    from trl import SFTTrainer

    model = load_model(model_dir, run_plan, tokenizer.pad_token_id)
    return SFTTrainer(
        model=model,
        args=sft_config(settings, run_plan, output_dir),
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora),
        callbacks=callbacks,
    )


def train(
    model_dir: Path, tokenizer: Any, train_ds: Any, val_ds: Any, settings: FinetuneSettings, run_plan: Plan,
    output_dir: Path, checkpoints: CheckpointStore | None = None,
) -> tuple[Any, TrainResult]:
    """Train, then evaluate on the validation set; returns the PEFT model and what happened.

    With `checkpoints`, training resumes from the newest usable one, saves new ones as the settings say, and on
    SIGTERM saves one and raises TransientError (the step exits 75 and is retried)."""
    import torch

    guard = CheckpointingGuard()
    callbacks: list[Any] = [ProgressCallback(), *([guard] if settings.gradient_checkpointing else [])]
    with StopRequest(active=checkpoints is not None) as stop:
        if checkpoints is not None:
            callbacks.append(CheckpointCallback(checkpoints, settings.checkpoint_every_steps,
                                                settings.checkpoint_every_minutes, stop))
        trainer = build_trainer(model_dir, tokenizer, train_ds, val_ds, settings, run_plan, output_dir, callbacks)
        resume = checkpoints.latest(output_dir / "resume") if checkpoints is not None else None
        if run_plan.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stop.signalled and trainer.state.global_step < trainer.state.max_steps:
        raise TransientError(f"stopped by SIGTERM at step {trainer.state.global_step}/{trainer.state.max_steps}; "
                             "its checkpoint is published and a retry resumes from it")
    val_loss = float(trainer.evaluate()["eval_loss"])
    history = trainer.state.log_history
    curve = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h]
    tokens = max((int(h["num_tokens"]) for h in history if "num_tokens" in h and "loss" in h), default=0)
    if run_plan.device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    result = TrainResult(
        loss_curve=curve, val_loss=val_loss, steps=output.global_step, tokens=tokens,
        seconds=float(output.metrics["train_runtime"]), peak_memory_mb=peak_mb, device=run_plan.device,
        mode=run_plan.mode, checkpointing=vars(guard.observed) if guard.observed else {},
    )
    return trainer.model, result
