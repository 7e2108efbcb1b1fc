"""Chat examples, label masking, EOS and padding with the embedded model's real tokenizer (no weights)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.config import DEFAULT_CONFIG, load_config
from steps.finetune import data
from steps.finetune.data import IGNORE_INDEX, QADataError
from steps.finetune.settings import LORA_PROFILES, FinetuneSettings, LoraProfile

ROW = {"question": "What is the capital of Zorbania?", "answer": "The capital of Zorbania is Quelltown.",
       "context": "Zorbania is a small country. Its capital is Quelltown."}


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    data.ensure_distinct_pad(tok)
    return tok


def test_pad_token_is_an_existing_token_distinct_from_eos(embedded_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    assert tok.pad_token_id == tok.eos_token_id  # the embedded tokenizer ships with pad = eos = <|im_end|>
    vocab_size = len(tok)
    assert data.ensure_distinct_pad(tok) == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id
    assert len(tok) == vocab_size  # reused, not added: the served base model's vocabulary is unchanged


def test_eos_carries_a_label_and_the_prompt_is_masked(tokenizer) -> None:
    example = data.encode_example(ROW, tokenizer, include_context=False)
    ids, labels = example["input_ids"], example["labels"]
    served_prompt = tokenizer.apply_chat_template([{"role": "user", "content": ROW["question"]}],
                                                  add_generation_prompt=True, tokenize=True, return_dict=False)
    n_prompt = len(served_prompt)
    assert ids[:n_prompt] == list(served_prompt)  # trained on exactly what inference sends
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ids[-1] == tokenizer.eos_token_id
    assert labels[-1] == tokenizer.eos_token_id != IGNORE_INDEX  # the model learns to stop
    assert labels[n_prompt:] == ids[n_prompt:]
    assert tokenizer.decode(labels[n_prompt:-1]) == ROW["answer"]


def test_collated_batch_masks_padding_but_keeps_every_eos(tokenizer) -> None:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    short = {**ROW, "answer": "Quelltown."}
    examples = [data.encode_example(r, tokenizer, False) for r in (ROW, short)]
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(examples)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    n_short = len(examples[1]["input_ids"])
    assert ids.shape[1] == len(examples[0]["input_ids"]) > n_short
    pad = mask == 0
    assert pad.sum() == ids.shape[1] - n_short
    assert (ids[pad] == tokenizer.pad_token_id).all()
    assert (labels[pad] == IGNORE_INDEX).all()
    assert labels[1, n_short - 1] == tokenizer.eos_token_id  # the short answer's EOS, just before its padding
    assert ((labels == tokenizer.eos_token_id).sum(dim=1) == 1).all()


def test_context_goes_into_the_prompt_only_when_asked(tokenizer) -> None:
    plain = data.encode_example(ROW, tokenizer, include_context=False)
    with_context = data.encode_example(ROW, tokenizer, include_context=True)
    assert "Zorbania is a small country" not in tokenizer.decode(plain["input_ids"])
    assert "Zorbania is a small country" in tokenizer.decode(with_context["input_ids"])
    answer = [t for t in with_context["labels"] if t != IGNORE_INDEX]
    assert answer == [t for t in plain["labels"] if t != IGNORE_INDEX]


def test_examples_longer_than_max_seq_len_are_dropped_and_counted(tokenizer) -> None:
    long_row = {**ROW, "answer": "word " * 300}
    examples, stats = data.encode_rows([ROW, long_row, ROW], tokenizer, False, max_seq_len=128)
    assert (stats.examples, stats.dropped_too_long) == (2, 1)
    assert all(len(e["input_ids"]) <= 128 for e in examples)
    assert stats.answer_tokens == sum(sum(t != IGNORE_INDEX for t in e["labels"]) for e in examples)


def test_read_qa_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "qa_train.jsonl"
    path.write_text(json.dumps(ROW) + "\n" + json.dumps({**ROW, "answer": " "}) + "\n")
    with pytest.raises(QADataError, match=r"qa_train.jsonl:2: needs non-empty"):
        data.read_qa(path, include_context=False)
    path.write_text(json.dumps(ROW) + "\n{not json\n")
    with pytest.raises(QADataError, match=r"qa_train.jsonl:2: not valid JSON"):
        data.read_qa(path, include_context=False)
    path.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n")
    assert len(data.read_qa(path, include_context=False)) == 1
    with pytest.raises(QADataError, match="context"):
        data.read_qa(path, include_context=True)


def test_lora_profile_by_name_or_explicit() -> None:
    assert FinetuneSettings().lora == LORA_PROFILES["all-linear"]
    assert FinetuneSettings(lora="attention").lora == LORA_PROFILES["attention"]
    assert FinetuneSettings(lora={"r": 4, "alpha": 8}).lora.r == 4
    with pytest.raises(ValueError, match="unknown LoRA profile 'huge'"):
        FinetuneSettings(lora="huge")
    # Profiles defined in the config: selectable by name, and they take precedence over the built-in ones.
    wide = {"r": 32, "alpha": 64, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    chosen = FinetuneSettings(lora_profiles={"wide": wide, "attention": {"r": 2}}, lora="wide")
    assert chosen.lora == LoraProfile(**wide)
    assert FinetuneSettings(lora_profiles={"attention": {"r": 2}}, lora="attention").lora.r == 2
    # What Hera hands the step (JSON) resolves to the same settings.
    assert FinetuneSettings.model_validate_json(chosen.model_dump_json()) == chosen


def test_shipped_local_config_defines_the_profile_it_uses(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())["finetune"]
    assert isinstance(raw["lora"], str) and raw["lora"] in raw["lora_profiles"]
    assert load_config(cwd=tmp_path).finetune.lora == LoraProfile(**raw["lora_profiles"][raw["lora"]])
    with pytest.raises(ValueError):
        FinetuneSettings(quantization="int8")


def test_nf4_without_cuda_is_refused_and_auto_falls_back_to_lora(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from steps.finetune.trainer import plan

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="nf4 needs a CUDA GPU"):
        plan(FinetuneSettings(quantization="nf4"))
    assert plan(FinetuneSettings()).mode == "lora"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert (plan(FinetuneSettings()).mode, plan(FinetuneSettings(quantization="none")).mode) == ("qlora", "lora")


def test_importing_the_step_does_not_import_torch() -> None:
    code = ("import sys, steps.finetune; heavy = {'torch', 'transformers', 'trl', 'peft', 'mlflow'} & set(sys.modules);"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
