"""The adapter really learns: loss falls, and greedy answers from the published adapter carry the facts."""

import json
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings
from steps.finetune import FinetuneInputs, run
from steps.finetune.settings import FinetuneSettings

pytestmark = pytest.mark.slow
# Invented places: the base model cannot know them, so a right answer proves the adapter learned it.
CAPITALS = {
    "Zorbania": "Quelltown", "Fendoria": "Marisport", "Glimmeria": "Ostravel", "Trellisia": "Vantor",
    "Brontia": "Kelmsford", "Yarrowen": "Dunmere", "Pellucia": "Havnar", "Quorria": "Silbeth",
    "Drovania": "Tarnwick", "Elsmoria": "Brightholm", "Kavorna": "Mezzaro", "Lunthia": "Pordale",
    "Nerevia": "Castelmoor", "Ombrisia": "Frayburg", "Saltrevia": "Wendmark", "Virellia": "Gorsham",
}


def _row(country: str, capital: str) -> dict:
    return {"question": f"What is the capital of {country}?", "answer": f"The capital of {country} is {capital}.",
            "type": "factual", "language": "en", "chunk_id": country, "doc_id": "atlas", "answerable": True,
            "context": f"{country} is a small country. Its capital is {capital}."}


def _greedy_answers(base_dir: Path, adapter_dir: Path, questions: list[str]) -> list[tuple[str, bool]]:
    """Plain transformers + peft, as a consumer of the published adapter would load it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                      adapter_dir).eval()
    answers = []
    for question in questions:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = out[0, prompt["input_ids"].shape[1]:]
        answers.append((tokenizer.decode(new, skip_special_tokens=True), bool(new[-1] == tokenizer.eos_token_id)))
    return answers


def test_adapter_learns_the_trained_answers(tmp_path: Path, embedded_model_dir: Path) -> None:
    context = RuntimeContext(run_id="learn", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))
    rows = [_row(country, capital) for country, capital in CAPITALS.items()]
    src = tmp_path / "qa"
    src.mkdir()
    (src / "qa_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (src / "qa_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    qa_uri = context.output_uri("generate_qa", "qa")
    context.store().publish_dir(src, qa_uri)

    settings = FinetuneSettings(max_steps=20, batch_size=4, learning_rate=2e-3)  # default all-linear profile
    out = run(FinetuneInputs(context=context, settings=settings, base_model="embedded", qa_uri=qa_uri,
                             registry=RegistrySettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")))

    curve = json.loads((context.store().materialize(out.metrics_uri, tmp_path / "c") / "train_metrics.json")
                       .read_text())["loss_curve"]
    first, last = curve[0]["loss"], sum(p["loss"] for p in curve[-3:]) / 3
    assert last < 0.4 * first, f"loss only went from {first:.3f} to {last:.3f}"
    assert out.val_loss < 0.4 * first  # the val rows were trained on: this is a memorisation check

    adapter_dir = context.store().materialize(out.adapter_uri, tmp_path / "c")
    answers = _greedy_answers(embedded_model_dir, adapter_dir, [f"What is the capital of {c}?" for c in CAPITALS])
    hits = [capital in answer for capital, (answer, _) in zip(CAPITALS.values(), answers)]
    # Measured 10/16 (the base model knows none of these invented names); the margin absorbs float noise.
    assert sum(hits) >= 6, list(zip(CAPITALS.values(), answers))
    # The EOS label at work: answers end with EOS instead of running on to max_new_tokens.
    assert sum(stopped for _, stopped in answers) >= 14, answers
