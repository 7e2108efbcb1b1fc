"""Load test of `eurolora serve` on this machine: throughput and latency at 1, 4 and 8 concurrent clients.

Starts the server as a real process on 127.0.0.1 (embedded model unless --model), warms it up, then
for each concurrency sends the same number of chat completions (greedy, small max_tokens, a fixed
set of short prompts) and prints one row per concurrency: throughput, latency p50 and p95 (nearest
rank) and the maximum. The 1-client row is the baseline measured in the same run; `speedup` is each
row's req/s over it. `batch` is the mean number of requests per engine call at that level (from the
server's `eurolora_batch_size` metric). At least 21 requests per level, so that the p95 is not simply
the slowest request (the default 40 puts it at the 38th of 40).

    .venv/bin/python bench/serve_load.py [--requests 40] [--max-tokens 16] [--concurrency 1,4,8] [--threads 1]

On a crowded machine give `--threads 1`: with torch's default (one thread per core) and other
processes competing for the cores, the server measured 4-10x slower on 2 cores.
"""

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from pipelines.local.processes import free_port, server_process

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


def server_argv(args: argparse.Namespace, port: int) -> list[str]:
    argv = [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port), "--model", args.model,
            "--max-batch", str(args.max_batch), "--batch-window-ms", str(args.batch_window_ms)]
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def batch_metric(client: httpx.Client) -> tuple[float, float]:
    """(sum, count) of eurolora_batch_size."""
    values = {"sum": 0.0, "count": 0.0}
    for line in client.get("/metrics").text.splitlines():
        for key in values:
            if line.startswith(f"eurolora_batch_size_{key} "):
                values[key] = float(line.split()[1])
    return values["sum"], values["count"]


def run_level(client: httpx.Client, concurrency: int, requests: int, max_tokens: int) -> dict[str, float]:
    def one(index: int) -> tuple[float, int]:
        body = {"model": "base", "max_tokens": max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}]}
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", json=body)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return elapsed, response.json()["usage"]["completion_tokens"]

    sum0, count0 = batch_metric(client)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    sum1, count1 = batch_metric(client)
    latencies = sorted(latency for latency, _ in results)
    tokens = sum(t for _, t in results)
    return {
        "concurrency": concurrency, "requests": requests, "wall_s": wall, "req_s": requests / wall,
        "tok_s": tokens / wall, "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
        "max_s": latencies[-1],
        "batch": (sum1 - sum0) / (count1 - count0) if count1 > count0 else 0.0, "tokens": tokens,
    }


def rank(n: int, q: float) -> int:
    """The nearest rank (1-based) of percentile `q` among `n` values."""
    return max(1, int(-(-n * q // 100)))


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[rank(len(sorted_values), q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per concurrency level (default 40, >= 21)")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens per request (default 16)")
    parser.add_argument("--concurrency", default="1,4,8", help="comma-separated levels; the first is the baseline")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--batch-window-ms", type=float, default=25.0)
    parser.add_argument("--threads", type=int, help="torch CPU threads of the server")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    if rank(args.requests, 95) >= args.requests:
        parser.error(f"--requests {args.requests}: the p95 would be the slowest request; give at least 21")

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        log_path = Path(tmp) / "server.log"
        started = time.perf_counter()
        port = free_port()
        root = f"http://127.0.0.1:{port}"
        with server_process(server_argv(args, port), f"{root}/health", log_path, timeout_s=300):
            print(f"server up in {time.perf_counter() - started:.1f}s at {root} "
                  f"(max_batch {args.max_batch}, window {args.batch_window_ms:g} ms, cpus {os.cpu_count()}, "
                  f"load average {os.getloadavg()[0]:.1f})", flush=True)
            with httpx.Client(base_url=root, timeout=600, trust_env=False,
                              limits=httpx.Limits(max_connections=max(levels))) as client:
                run_level(client, 1, 2, args.max_tokens)  # warm-up
                rows = []
                for level in levels:
                    rows.append(run_level(client, level, args.requests, args.max_tokens))
                    print(f"  concurrency {level}: done in {rows[-1]['wall_s']:.1f}s", flush=True)

    base = rows[0]["req_s"]
    print(f"\neurolora serve, {args.requests} requests per level (p95 = the {rank(args.requests, 95)}th), "
          f"max_tokens {args.max_tokens}, greedy (baseline: concurrency {levels[0]}, same run)")
    header = (f"{'clients':>7} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'batch':>6} "
              f"{'speedup':>8}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['concurrency']:>7} {row['req_s']:>7.2f} {row['tok_s']:>7.1f} {row['p50_s']:>7.2f} "
              f"{row['p95_s']:>7.2f} {row['max_s']:>7.2f} {row['batch']:>6.1f} {row['req_s'] / base:>7.2f}x")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
