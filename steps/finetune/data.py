"""QA pairs -> tokenized chat examples whose loss covers the assistant answer and its EOS only."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100  # label value the loss skips (prompt and padding)
REQUIRED_FIELDS = ("question", "answer")
# Existing special tokens that can pad without resizing the vocabulary, most specific first.
_PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "<|endoftext|>", "<unk>")


class QADataError(ValueError):
    """The QA artifact cannot be used for training."""


@dataclass(frozen=True)
class EncodeStats:
    examples: int
    dropped_too_long: int
    prompt_tokens: int
    answer_tokens: int


def read_qa(path: Path, include_context: bool) -> list[dict[str, Any]]:
    """All rows of a QA jsonl file; a malformed line fails with its line number (nothing is skipped)."""
    required = (*REQUIRED_FIELDS, "context") if include_context else REQUIRED_FIELDS
    if not path.is_file():
        raise QADataError(f"{path.name} is missing from the QA artifact")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QADataError(f"{path.name}:{number}: not valid JSON ({exc.msg})") from None
        if not all(isinstance(row.get(f), str) and row[f].strip() for f in required):
            raise QADataError(f"{path.name}:{number}: needs non-empty string fields {list(required)}")
        rows.append(row)
    return rows


def ensure_distinct_pad(tokenizer: Any) -> str:
    """Give the tokenizer a pad token different from EOS, reusing an existing special token.

    With pad == eos, anything that masks padding by token id also masks the real EOS, and the model never
    learns to stop. Reusing a token keeps the vocabulary (and the base model served by vLLM) unchanged.
    """
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise QADataError("the base model's tokenizer has no EOS token; answers could not be terminated")
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos_id:
        return tokenizer.pad_token
    vocab = tokenizer.get_vocab()
    for candidate in (*_PAD_CANDIDATES, tokenizer.unk_token):
        if candidate and candidate in vocab and vocab[candidate] != eos_id:
            tokenizer.pad_token = candidate
            return candidate
    raise QADataError(
        f"no special token distinct from EOS ({tokenizer.eos_token!r}) to pad with; tried {list(_PAD_CANDIDATES)}. "
        "Add a pad token to the base model's tokenizer (and resize its embeddings) before fine-tuning."
    )


def prompt_text(row: dict[str, Any], include_context: bool) -> str:
    question = row["question"].strip()
    return f"Context:\n{row['context'].strip()}\n\nQuestion: {question}" if include_context else question


def encode_example(row: dict[str, Any], tokenizer: Any, include_context: bool) -> dict[str, list[int]]:
    """input_ids = chat prompt (as served, with the generation prompt) + answer + EOS; labels mask the prompt.

    The answer is tokenized on its own, as the model produces it after the generation prompt, and ends in
    EOS (the end-of-turn token of the chat template) so that the model learns to stop.
    """
    messages = [{"role": "user", "content": prompt_text(row, include_context)}]
    prompt_ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=False))
    answer_ids = tokenizer(row["answer"].strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def encode_rows(
    rows: list[dict[str, Any]], tokenizer: Any, include_context: bool, max_seq_len: int
) -> tuple[list[dict[str, list[int]]], EncodeStats]:
    """Encode every row; rows longer than max_seq_len are dropped (truncating would cut the EOS) and counted."""
    examples, dropped, prompt_tokens, answer_tokens = [], 0, 0, 0
    for row in rows:
        example = encode_example(row, tokenizer, include_context)
        if len(example["input_ids"]) > max_seq_len:
            dropped += 1
            continue
        answer = sum(label != IGNORE_INDEX for label in example["labels"])
        answer_tokens += answer
        prompt_tokens += len(example["input_ids"]) - answer
        examples.append(example)
    return examples, EncodeStats(len(examples), dropped, prompt_tokens, answer_tokens)


def build_dataset(examples: list[dict[str, list[int]]]) -> Any:
    """A `datasets.Dataset` with input_ids and labels: trl sees it as already tokenized and keeps our labels."""
    from datasets import Dataset

    return Dataset.from_dict({
        "input_ids": [e["input_ids"] for e in examples],
        "labels": [e["labels"] for e in examples],
    })
