"""Token counting with the base model's own tokenizer, loaded from a local folder (never a hub)."""

from pathlib import Path

from steps.ingest.chunking import TokenCounter


def load_token_counter(model_dir: Path) -> TokenCounter:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)

    def count(text: str) -> int:
        # No BOS/EOS: the chunk's own tokens, as they will sit inside a training prompt.
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count
