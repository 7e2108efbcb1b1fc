"""Fine-tuning throughput: the finetune step's training path against the plain transformers/peft/bitsandbytes
loop, side by side in one run, on random-init weights of real model shapes (nothing is downloaded).

    python bench/finetune_gpu.py [--shape mistral-7b] [--mode qlora] [--steps 20] [--warmup 5]
    python bench/finetune_gpu.py --shape llama-3.2-1b --batch 8
    python bench/finetune_gpu.py --shape tiny --mode lora --steps 2 --warmup 1   # CPU smoke run (the test suite)

Both loops train the same LoRA (r=16 on every linear layer of the blocks) with AdamW, gradient checkpointing
and, on CUDA, bf16 compute (QLoRA: nf4 with double quantisation), on the same synthetic QA samples whose
lengths follow the demo's spread (60 to 600 tokens, the first third of each a masked prompt):

- plain: the loop the issue measured: micro-batches of `--batch` samples in random order, each padded to its
  longest sample, `model(labels=...)` cross-entropy, written by hand;
- eurolora: `steps.finetune.trainer.build_trainer` (trl's SFTTrainer, as the step runs it) with the step's
  padding-free packing: rows of at most `--seq` tokens, best-fit, sequences kept apart by position ids.

Reported per loop over the timed steps (after `--warmup`): useful (non-padding) tokens per second, MFU
(6 x parameters x useful tokens/s over `--peak-tflops`), and peak GPU memory. The model is built from its
config, saved once in bf16 (fp32 on CPU) and loaded by both loops through `from_pretrained`, as the step
loads its base model, so quantisation happens the same way in both.
"""

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.finetune.data import IGNORE_INDEX
from steps.finetune.settings import LORA_PROFILES, FinetuneSettings
from steps.finetune.trainer import Plan, build_trainer, load_model, lora_config

# Real shapes (config.json of the published checkpoints); `tiny` keeps the CPU smoke run to seconds.
SHAPES: dict[str, dict[str, Any]] = {
    "mistral-7b": {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
                   "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                   "vocab_size": 32000, "max_position_embeddings": 32768, "rope_theta": 1_000_000.0,
                   "tie_word_embeddings": False},
    "llama-3.2-1b": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
                     "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
                     "vocab_size": 128256, "max_position_embeddings": 131072, "rope_theta": 500_000.0,
                     "tie_word_embeddings": True},
    "tiny": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
             "max_position_embeddings": 2048, "tie_word_embeddings": False},
}
PAD_ID, EOS_ID = 0, 1


@dataclass
class LoopResult:
    name: str
    shape: str  # "seq x batch"
    tokens: int  # useful tokens in the timed steps
    seconds: float
    peak_gib: float | None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def build_model_dir(shape: str, root: Path, cuda: bool) -> tuple[Path, int]:
    """Random-init weights of the shape saved as an HF checkpoint with a minimal tokenizer; (dir, parameters)."""
    import torch
    from tokenizers import Tokenizer, models
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    spec = dict(SHAPES[shape])
    config = AutoConfig.for_model(spec.pop("model_type"), **spec, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
                                  bos_token_id=EOS_ID)
    dtype = torch.bfloat16 if cuda else torch.float32
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    parameters = sum(p.numel() for p in model.parameters())
    model_dir = root / f"{shape}-random"
    model.save_pretrained(model_dir)
    del model
    _free(cuda)
    vocab = {"<pad>": PAD_ID, "</s>": EOS_ID, "<unk>": 2}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                        pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(model_dir)
    return model_dir, parameters


def synthetic_samples(count: int, vocab_size: int, min_len: int, max_len: int, seed: int) -> list[dict]:
    """QA-shaped samples: random tokens, a masked prompt (the first third), an answer ending in EOS."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        length = rng.randint(min_len, max_len)
        ids = [rng.randrange(3, vocab_size) for _ in range(length - 1)] + [EOS_ID]
        prompt = length // 3
        samples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return samples


def _free(cuda: bool) -> None:
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _peak_gib(cuda: bool) -> float | None:
    if not cuda:
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**30


def plain_loop(model_dir: Path, run_plan: Plan, samples: list[dict], args: argparse.Namespace) -> LoopResult:
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    cuda = run_plan.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = load_model(model_dir, run_plan, PAD_ID)
    if run_plan.mode == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(LORA_PROFILES["all-linear"]))
    model.config.use_cache = False
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    order = random.Random(args.seed).sample(range(len(samples)), len(samples))
    device = next(model.parameters()).device
    tokens = 0
    seconds = 0.0
    for step in range(args.warmup + args.steps):
        batch = [samples[i] for i in order[step * args.batch:(step + 1) * args.batch]]
        width = max(len(s["input_ids"]) for s in batch)
        ids = torch.tensor([s["input_ids"] + [PAD_ID] * (width - len(s["input_ids"])) for s in batch], device=device)
        labels = torch.tensor([s["labels"] + [IGNORE_INDEX] * (width - len(s["labels"])) for s in batch],
                              device=device)
        mask = torch.tensor([[1] * len(s["input_ids"]) + [0] * (width - len(s["input_ids"])) for s in batch],
                            device=device)
        _sync(cuda)
        started = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(cuda)
        if step >= args.warmup:
            seconds += time.perf_counter() - started
            tokens += sum(len(s["input_ids"]) for s in batch)
    peak = _peak_gib(cuda)
    del model, optimizer
    _free(cuda)
    return LoopResult("plain (padded batches)", f"<= {args.max_len} x {args.batch}", tokens, seconds, peak)


def step_clock(cuda: bool) -> Any:
    """A Trainer callback timing each optimizer step (`.durations`), the GPU synchronised at both ends."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self._started = 0.0

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            _sync(cuda)
            self._started = time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            _sync(cuda)
            self.durations.append(time.perf_counter() - self._started)

    return StepClock()


def eurolora_loop(model_dir: Path, run_plan: Plan, samples: list[dict], args: argparse.Namespace) -> LoopResult:
    import torch
    from transformers import AutoTokenizer

    from steps.finetune.data import build_dataset

    cuda = run_plan.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    settings = FinetuneSettings(
        quantization="nf4" if run_plan.mode == "qlora" else "none", batching="packed", max_seq_len=args.seq,
        batch_size=args.packed_batch, max_steps=args.warmup + args.steps, learning_rate=args.lr,
        gradient_checkpointing=True, seed=args.seed,
    )
    clock = step_clock(cuda)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as out:
        trainer = build_trainer(model_dir, tokenizer, build_dataset(samples), None, settings, run_plan, Path(out),
                                [clock])
        collate = trainer.data_collator
        batch_tokens: list[int] = []

        def counting(features: list[dict]) -> dict:
            batch_tokens.append(sum(len(f["input_ids"]) for f in features))  # padding-free: every token is real
            return collate(features)

        trainer.data_collator = counting
        trainer.train()
    timed = slice(args.warmup, args.warmup + args.steps)
    peak = _peak_gib(cuda)
    del trainer
    _free(cuda)
    return LoopResult("eurolora (packed, trl)", f"{args.seq} x {args.packed_batch}", sum(batch_tokens[timed]),
                      sum(clock.durations[timed]), peak)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="mistral-7b")
    parser.add_argument("--mode", choices=("qlora", "lora"), default="qlora")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per loop")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocator, kernels)")
    parser.add_argument("--batch", type=int, default=4, help="samples per micro-batch of the plain loop")
    parser.add_argument("--seq", type=int, default=1024, help="tokens per packed row (eurolora loop)")
    parser.add_argument("--packed-batch", type=int, default=4, help="packed rows per micro-batch (eurolora loop)")
    parser.add_argument("--min-len", type=int, default=60)
    parser.add_argument("--max-len", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="dense bf16 peak of the GPU (H100/H200)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if args.mode == "qlora" and not cuda:
        parser.error("--mode qlora needs a CUDA GPU (bitsandbytes 4-bit on CPU trains silently wrong)")
    run_plan = Plan(device="cuda" if cuda else "cpu", mode=args.mode)
    per_step = max(args.batch, args.packed_batch * args.seq // ((args.min_len + args.max_len) // 2) + 1)
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        model_dir, parameters = build_model_dir(args.shape, Path(tmp), cuda)
        vocab = SHAPES[args.shape]["vocab_size"]
        samples = synthetic_samples(per_step * (args.warmup + args.steps) * 2, vocab, args.min_len, args.max_len,
                                    args.seed)
        rows = [plain_loop(model_dir, run_plan, samples, args), eurolora_loop(model_dir, run_plan, samples, args)]

    device = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"\n{args.shape} ({parameters / 1e9:.2f} B parameters), {args.mode}, {device}, {args.steps} timed steps "
          f"after {args.warmup}; samples {args.min_len}-{args.max_len} tokens (baseline: plain, same run)")
    header = f"{'loop':<24} {'seq x batch':>12} {'useful tok/s':>13} {'MFU':>6} {'peak GiB':>9} {'speedup':>8}"
    print(header)
    print("-" * len(header))
    base = rows[0].tokens_per_s
    for row in rows:
        mfu = 6 * parameters * row.tokens_per_s / (args.peak_tflops * 1e12)
        peak = f"{row.peak_gib:.1f}" if row.peak_gib is not None else "-"
        print(f"{row.name:<24} {row.shape:>12} {row.tokens_per_s:>13,.0f} {mfu:>6.1%} {peak:>9} "
              f"{row.tokens_per_s / base:>7.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"shape": args.shape, "mode": args.mode, "device": device,
                                         "parameters": parameters, "rows": [vars(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
