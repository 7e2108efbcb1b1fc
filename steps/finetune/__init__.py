"""finetune: LoRA/QLoRA SFT of the base model on the generated QA pairs; publishes the adapter and its metrics.

Hera's runner calls `run` in the train-gpu container; the local runner calls it on CPU. Heavy imports stay
inside `run` so that compiling the pipeline never imports torch.
"""

import json
import tempfile
from pathlib import Path
from typing import Any

from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, publishing, transient_exit
from steps.common.qa_dataset import split_file
from steps.common.registry_settings import RegistrySettings
from steps.common.tags import BASE_MODEL_TAG, DATASET_DIGEST_TAG, MODE_TAG, PIPELINE_RUN_ID_TAG, STEP_TAG
from steps.finetune.settings import FinetuneSettings


class FinetuneInputs(Input):
    context: RuntimeContext
    settings: FinetuneSettings
    base_model: str  # "embedded", a local HF folder, or an s3:// URI (see steps.common.models)
    qa_uri: str  # generate_qa's published artifact with qa_train.jsonl and qa_val.jsonl
    registry: RegistrySettings


class FinetuneOutputs(Output):
    adapter_uri: str
    metrics_uri: str
    mlflow_run_id: str
    train_loss_first: float
    train_loss_last: float
    val_loss: float


@transient_exit
def run(inputs: FinetuneInputs) -> FinetuneOutputs:
    from transformers import AutoTokenizer

    from steps.common.models import resolve_model_dir
    from steps.common.tags import ADAPTER_URI_TAG
    from steps.finetune import data, trainer
    from steps.finetune.checkpoints import CheckpointStore
    from steps.finetune.tracking import flatten, tracked_run

    context, settings = inputs.context, inputs.settings
    run_plan = trainer.plan(settings)  # refuses nf4 without CUDA before any download
    store = context.store()
    qa_dir = store.materialize(inputs.qa_uri, context.scratch() / "qa")
    dataset_digest = store.read_manifest(inputs.qa_uri).digest
    model_dir = resolve_model_dir(inputs.base_model, context)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data.ensure_distinct_pad(tokenizer)
    splits: dict[str, Any] = {}
    stats: dict[str, data.EncodeStats] = {}
    for split in ("train", "val"):
        rows = data.read_qa(qa_dir / split_file(split), settings.include_context)
        examples, stats[split] = data.encode_rows(rows, tokenizer, settings.include_context, settings.max_seq_len)
        if not examples:
            raise data.QADataError(
                f"{split_file(split)} has no usable example ({len(rows)} rows, {stats[split].dropped_too_long} longer "
                f"than max_seq_len={settings.max_seq_len}): generate_qa must produce {split} pairs, or raise "
                "finetune.max_seq_len")
        splits[split] = data.build_dataset(examples)

    tags = {STEP_TAG: "finetune", PIPELINE_RUN_ID_TAG: context.run_id, BASE_MODEL_TAG: inputs.base_model,
            DATASET_DIGEST_TAG: dataset_digest, MODE_TAG: run_plan.mode}
    params = {**flatten("", settings.model_dump()), "device": run_plan.device, "mode": run_plan.mode,
              "train_examples": stats["train"].examples, "val_examples": stats["val"].examples}
    with tracked_run(inputs.registry, context.residency, f"finetune-{context.run_id}", tags, params) as tracking:
        with tempfile.TemporaryDirectory(prefix="finetune-", dir=context.scratch()) as work:
            # Same run id, same place: a retried pod finds the checkpoints its killed attempt published.
            checkpoints = CheckpointStore(store, context.output_uri("finetune", "checkpoints"))
            model, result = trainer.train(model_dir, tokenizer, splits["train"], splits["val"], settings,
                                          run_plan, Path(work), checkpoints)
        with publishing(context, "finetune", "adapter") as (out, adapter_uri):
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        report = _metrics_report(result, stats, dataset_digest, inputs.base_model, tracking.run_id)
        with publishing(context, "finetune", "metrics") as (out, metrics_uri):
            (out / "train_metrics.json").write_text(json.dumps(report, indent=1))
        tracking.log_results(result.loss_curve, _final_metrics(report), {ADAPTER_URI_TAG: adapter_uri})
    return FinetuneOutputs(
        adapter_uri=adapter_uri, metrics_uri=metrics_uri, mlflow_run_id=tracking.run_id,
        train_loss_first=report["train_loss_first"], train_loss_last=report["train_loss_last"],
        val_loss=report["val_loss"],
    )


def _metrics_report(result: Any, stats: dict[str, Any], dataset_digest: str, base_model: str,
                    mlflow_run_id: str) -> dict[str, Any]:
    """Counts and timings only (no prompt or answer text: GDPR data minimisation)."""
    losses = [loss for _, loss in result.loss_curve]
    return {
        "mode": result.mode,
        "device": result.device,
        "base_model": base_model,
        "dataset_digest": dataset_digest,
        "mlflow_run_id": mlflow_run_id,
        "steps": result.steps,
        "tokens": result.tokens,
        "seconds": round(result.seconds, 3),
        "tokens_per_s": round(result.tokens_per_s, 2),
        # Peak resident set size on CPU, peak allocated CUDA memory on GPU.
        "peak_memory_mb": round(result.peak_memory_mb, 1),
        "peak_memory_kind": "cuda_allocated" if result.device == "cuda" else "rss",
        "train_loss_first": losses[0],
        "train_loss_last": losses[-1],
        "val_loss": result.val_loss,
        "loss_curve": [{"step": step, "loss": loss} for step, loss in result.loss_curve],
        "examples": {split: vars(split_stats) for split, split_stats in stats.items()},
        "gradient_checkpointing": result.checkpointing,
    }


def _final_metrics(report: dict[str, Any]) -> dict[str, float]:
    keys = ("train_loss_first", "train_loss_last", "val_loss", "steps", "tokens", "seconds", "tokens_per_s",
            "peak_memory_mb")
    return {key: float(report[key]) for key in keys}
