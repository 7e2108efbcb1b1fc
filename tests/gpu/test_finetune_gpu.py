"""QLoRA (nf4, double quantisation, bf16 compute) on a CUDA GPU. Run on the GPU machine: pytest -m gpu."""

import json
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings
from steps.finetune import FinetuneInputs, data, run
from steps.finetune.settings import FinetuneSettings

pytestmark = pytest.mark.gpu

CAPITALS = {"Zorbania": "Quelltown", "Fendoria": "Marisport", "Glimmeria": "Ostravel", "Trellisia": "Vantor",
            "Brontia": "Kelmsford", "Yarrowen": "Dunmere", "Pellucia": "Havnar", "Quorria": "Silbeth"}


@pytest.fixture(autouse=True)
def _cuda_and_bitsandbytes() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("bitsandbytes")


def _rows() -> list[dict]:
    return [{"question": f"What is the capital of {c}?", "answer": f"The capital of {c} is {k}.", "type": "factual",
             "language": "en", "chunk_id": c, "doc_id": "atlas", "answerable": True, "context": f"{c}: {k}."}
            for c, k in CAPITALS.items()]


def test_auto_picks_qlora_and_the_base_is_nf4_with_double_quant(embedded_model_dir: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb
    import torch
    from transformers import AutoTokenizer

    from steps.finetune.trainer import build_trainer, plan

    settings = FinetuneSettings(max_steps=4, batch_size=4, learning_rate=1e-3)
    run_plan = plan(settings)
    assert (run_plan.device, run_plan.mode) == ("cuda", "qlora")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    data.ensure_distinct_pad(tokenizer)
    examples, _ = data.encode_rows(_rows(), tokenizer, False, settings.max_seq_len)
    ds = data.build_dataset(examples)
    trainer = build_trainer(embedded_model_dir, tokenizer, ds, ds, settings, run_plan, tmp_path)

    linear4 = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4, "no 4-bit layers: the base model was not quantised"
    state = linear4[0].weight.quant_state
    assert state.quant_type == "nf4" and state.nested  # nested = double quantisation
    assert linear4[0].compute_dtype == torch.bfloat16
    lora = [p for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert lora and all(p.dtype == torch.bfloat16 and p.is_cuda for p in lora)

    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 4 and all(0 < loss < 20 for loss in losses)


@pytest.mark.parametrize("batching", ["length_grouped", "packed"])
def test_run_qlora_end_to_end(batching: str, embedded_model_dir: Path, tmp_path: Path) -> None:
    context = RuntimeContext(run_id="gpu", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))
    src = tmp_path / "qa"
    src.mkdir()
    lines = "".join(json.dumps(r) + "\n" for r in _rows())
    (src / "qa_train.jsonl").write_text(lines)
    (src / "qa_val.jsonl").write_text(lines)
    qa_uri = context.output_uri("generate_qa", "qa")
    context.store().publish_dir(src, qa_uri)

    settings = FinetuneSettings(quantization="nf4", batching=batching, max_steps=30, batch_size=4,
                                learning_rate=1e-3)
    out = run(FinetuneInputs(context=context, settings=settings, base_model="embedded", qa_uri=qa_uri,
                             registry=RegistrySettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")))

    store = context.store()
    metrics = json.loads((store.materialize(out.metrics_uri, tmp_path / "c") / "train_metrics.json").read_text())
    assert (metrics["mode"], metrics["device"], metrics["peak_memory_kind"]) == ("qlora", "cuda", "cuda_allocated")
    assert metrics["gradient_checkpointing"] == {"training": True, "checkpointing": True, "grad_enabled": True}
    assert 0 < metrics["peak_memory_mb"] < 4096
    assert out.train_loss_last < 0.5 * out.train_loss_first
    adapter = store.materialize(out.adapter_uri, tmp_path / "c")
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
