"""finetune on the embedded model with tiny budgets: batching, determinism, checkpointing, the whole step."""

import itertools
import json
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings
from steps.finetune import FinetuneInputs, data, run
from steps.finetune.data import IGNORE_INDEX
from steps.finetune.settings import FinetuneSettings
from steps.finetune.trainer import Plan, build_trainer, train

pytestmark = pytest.mark.slow
CPU = Plan(device="cpu", mode="lora")
PLACES = [("Zorbania", "Quelltown"), ("Fendoria", "Marisport"), ("Glimmeria", "Ostrava Nova"),
          ("Trellisia", "Vantor"), ("Brontia", "Kelmsford"), ("Yarrowen", "Dunmere")]


def qa_rows(long_answers: bool = False) -> list[dict]:
    rows = []
    for i, (country, capital) in enumerate(PLACES):
        answer = f"The capital of {country} is {capital}."
        if long_answers and i % 2:
            answer += " It lies by a river and has many old bridges and markets." * (i + 1)
        rows.append({"question": f"What is the capital of {country}?", "answer": answer, "type": "factual",
                     "language": "en", "chunk_id": f"c{i}", "doc_id": "d0", "answerable": True,
                     "context": f"{country} is a country. Its capital is {capital}."})
    return rows


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    data.ensure_distinct_pad(tok)
    return tok


def _dataset(tokenizer, rows: list[dict], max_seq_len: int = 512):
    examples, _ = data.encode_rows(rows, tokenizer, False, max_seq_len)
    return data.build_dataset(examples), examples


@pytest.mark.parametrize("batching", ["length_grouped", "packed"])
def test_batches_respect_max_seq_len_and_keep_every_eos(batching, embedded_model_dir, tokenizer, tmp_path) -> None:
    max_len = 96
    ds, examples = _dataset(tokenizer, qa_rows(long_answers=True), max_len)
    assert 2 < len(examples) < len(PLACES)  # some long rows were dropped, none truncated
    settings = FinetuneSettings(batching=batching, batch_size=2, max_seq_len=max_len)
    trainer = build_trainer(embedded_model_dir, tokenizer, ds, ds, settings, CPU, tmp_path)
    eos = tokenizer.eos_token_id
    batches = list(trainer.get_train_dataloader())
    seen_eos = 0
    for batch in batches:
        labels = batch["labels"]
        seen_eos += int((labels == eos).sum())
        if batching == "length_grouped":
            assert labels.shape[1] <= max_len
            pad = batch["attention_mask"] == 0
            assert (labels[pad] == IGNORE_INDEX).all() and (batch["input_ids"][pad] == tokenizer.pad_token_id).all()
        else:  # padding-free: one flat row, sequences delimited by restarting position ids
            assert "attention_mask" not in batch and labels.shape[0] == 1
            starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [labels.shape[1]]
            assert all(0 < b - a <= max_len for a, b in itertools.pairwise(starts))
            assert (labels[0, starts[:-1]] == IGNORE_INDEX).all()
    assert seen_eos == len(examples)  # every answer's EOS reached the loss exactly once
    if batching == "packed":
        assert all(len(row["input_ids"]) <= max_len for row in trainer.train_dataset)


def test_packed_batch_gives_the_same_loss_as_padded_batches(embedded_model_dir, tokenizer) -> None:
    """Padding-free packing on CPU/SDPA: sequences in one row must not attend to each other."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    _, examples = _dataset(tokenizer, qa_rows())
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32).eval()

    def summed_nll(batch) -> float:
        batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids", "labels")}
        labels = batch.pop("labels")
        with torch.no_grad():
            # use_cache=False as in trl's compute_loss: with a cache, transformers ignores the packing in
            # position_ids and lets the sequences attend to each other (the loss here then differs by ~50%).
            logits = model(**batch, use_cache=False).logits[:, :-1]
        return float(torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
            reduction="sum"))

    padded = summed_nll(DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(examples))
    packed = summed_nll(DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id,
                                                        padding_free=True)(examples))
    assert packed == pytest.approx(padded, rel=1e-4)


def test_training_is_deterministic_with_checkpointing_active(embedded_model_dir, tokenizer, tmp_path) -> None:
    ds, _ = _dataset(tokenizer, qa_rows()[:4])
    settings = FinetuneSettings(max_steps=2, batch_size=2, seed=7)
    runs = []
    for attempt in range(2):
        model, result = train(embedded_model_dir, tokenizer, ds, ds, settings, CPU, tmp_path / str(attempt))
        runs.append(result)
        # The guard saw a decoder layer run in train mode with checkpointing on, under autograd.
        assert result.checkpointing == {"training": True, "checkpointing": True, "grad_enabled": True}
        assert model.get_base_model().is_gradient_checkpointing
    first, second = runs
    assert [s for s, _ in first.loss_curve] == [1, 2]
    assert first.loss_curve == second.loss_curve  # bit-identical losses on CPU with the same seed
    assert first.val_loss == second.val_loss
    _, third = train(embedded_model_dir, tokenizer, ds, ds, settings.model_copy(update={"seed": 8}),
                      CPU, tmp_path / "other-seed")
    assert third.loss_curve != first.loss_curve  # the seed matters (LoRA init, order, dropout)


def _context(tmp_path: Path) -> RuntimeContext:
    return RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                          residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))


def publish_qa(context: RuntimeContext, train_rows: list[dict], val_rows: list[dict]) -> str:
    src = Path(context.scratch()) / "qa-src"
    src.mkdir(parents=True)
    for split, rows in (("train", train_rows), ("val", val_rows)):
        (src / f"qa_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    uri = context.output_uri("generate_qa", "qa")
    context.store().publish_dir(src, uri)
    return uri


def test_run_publishes_adapter_metrics_and_an_mlflow_run(tmp_path, monkeypatch) -> None:
    from mlflow import MlflowClient

    context = _context(tmp_path)
    rows = qa_rows()
    qa_uri = publish_qa(context, rows[:4], rows[4:])
    progress = tmp_path / "progress"
    monkeypatch.setenv("ARGO_PROGRESS_FILE", str(progress))
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    inputs = FinetuneInputs(context=context, settings=FinetuneSettings(max_steps=3, batch_size=2),
                            base_model="embedded", qa_uri=qa_uri,
                            registry=RegistrySettings(tracking_uri=tracking_uri, experiment="ft-test"))
    # Hera hands the step its inputs as JSON: the model must survive the round trip.
    out = run(FinetuneInputs.model_validate_json(inputs.model_dump_json()))

    store = context.store()
    adapter = store.materialize(out.adapter_uri, tmp_path / "cache")
    names = {p.name for p in adapter.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    saved = json.loads((adapter / "tokenizer_config.json").read_text())
    assert saved["pad_token"] == "<|endoftext|>" != saved["eos_token"]
    lora = json.loads((adapter / "adapter_config.json").read_text())
    assert (lora["r"], len(lora["target_modules"])) == (16, 7)  # the default all-linear profile

    metrics = json.loads((store.materialize(out.metrics_uri, tmp_path / "cache") / "train_metrics.json").read_text())
    assert metrics["steps"] == 3 and len(metrics["loss_curve"]) == 3
    assert (metrics["mode"], metrics["device"]) == ("lora", "cpu")
    assert metrics["train_loss_first"] == out.train_loss_first == metrics["loss_curve"][0]["loss"]
    assert metrics["train_loss_last"] == out.train_loss_last == metrics["loss_curve"][-1]["loss"]
    assert 0 < out.val_loss == metrics["val_loss"] < 10
    assert metrics["tokens"] > 0 and metrics["tokens_per_s"] > 0 and metrics["peak_memory_mb"] > 100
    assert metrics["examples"]["train"]["examples"] == 4 and metrics["examples"]["val"]["examples"] == 2
    assert progress.read_text() == "3/3"

    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow_run = client.get_run(out.mlflow_run_id)
    assert mlflow_run.info.status == "FINISHED"
    tags, params = mlflow_run.data.tags, mlflow_run.data.params
    assert tags["eurolora.pipeline_run_id"] == "t" and tags["eurolora.base_model"] == "embedded"
    assert tags["eurolora.dataset_digest"] == store.read_manifest(qa_uri).digest == metrics["dataset_digest"]
    assert tags["eurolora.adapter_uri"] == out.adapter_uri
    assert params["lora.r"] == "16" and params["max_steps"] == "3" and params["mode"] == "lora"
    assert mlflow_run.data.metrics["val_loss"] == pytest.approx(out.val_loss)
    curve = client.get_metric_history(out.mlflow_run_id, "train_loss")
    assert [(m.step, m.value) for m in curve] == [(p["step"], pytest.approx(p["loss"])) for p in metrics["loss_curve"]]


def test_run_refuses_an_empty_validation_split(tmp_path) -> None:
    context = _context(tmp_path)
    qa_uri = publish_qa(context, qa_rows(), [])
    inputs = FinetuneInputs(context=context, settings=FinetuneSettings(max_steps=1), base_model="embedded",
                            qa_uri=qa_uri, registry=RegistrySettings(tracking_uri=f"sqlite:///{tmp_path}/m.db"))
    with pytest.raises(data.QADataError, match="qa_val.jsonl has no usable example"):
        run(inputs)
