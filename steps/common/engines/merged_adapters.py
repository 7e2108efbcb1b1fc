"""LoRA adapters merged into full checkpoints, for engines that run one adapter faster as a plain model.

vLLM's CPU LoRA path measured ~3.5x slower than the base model; the same adapter merged into the base
weights (peft `merge_and_unload`, ~9 s for the embedded model) runs at base-model speed with the same
greedy answers up to float rounding. The merged checkpoints live in a temporary folder this object owns
and deletes on `close()`.
"""

import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def adapter_folder(adapter: str) -> Path:
    """The local folder of a LoRA adapter (`file://` allowed), checked to hold a peft adapter."""
    folder = Path(adapter.removeprefix("file://")).expanduser().resolve()
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ValueError(f"adapter {adapter!r} is not a local LoRA adapter folder (no {ADAPTER_CONFIG})")
    return folder


def adapter_rank(folder: Path) -> int:
    """The adapter's LoRA rank: its `r`, or the largest of a per-module `rank_pattern`."""
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    ranks = [int(config.get("r", 0)), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


class MergedAdapters:
    """Base checkpoint + adapter folder -> a merged checkpoint folder, made once per adapter."""

    def __init__(self, base_dir: Path, scratch: Path) -> None:
        self._base_dir = base_dir
        scratch.mkdir(parents=True, exist_ok=True)
        self._root = Path(tempfile.mkdtemp(prefix="merged-adapters-", dir=scratch))
        self._merged: dict[Path, Path] = {}

    def checkpoint(self, adapter: Path) -> Path:
        """The merged checkpoint of `adapter` (an adapter folder), merging it on first use."""
        if adapter not in self._merged:
            target = self._root / hashlib.sha256(str(adapter).encode()).hexdigest()[:16]
            started = time.perf_counter()
            try:
                _merge(self._base_dir, adapter, target)
            except Exception:
                shutil.rmtree(target, ignore_errors=True)  # never leave a half-written checkpoint behind
                raise
            log.info("merged adapter %s into the base checkpoint in %.1fs", adapter.name,
                     time.perf_counter() - started)
            self._merged[adapter] = target
        return self._merged[adapter]

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
        self._merged.clear()


def _merge(base_dir: Path, adapter: Path, target: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # dtype "auto": the merged checkpoint keeps the base checkpoint's precision.
    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True, dtype="auto")
    merged = PeftModel.from_pretrained(base, str(adapter), local_files_only=True).merge_and_unload()
    merged.save_pretrained(target)
    AutoTokenizer.from_pretrained(base_dir, local_files_only=True).save_pretrained(target)
