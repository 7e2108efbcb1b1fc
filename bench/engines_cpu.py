"""The `vllm` engine against the `transformers` engine on CPU, side by side in one run, on the pipeline's work.

    .venv/bin/python bench/engines_cpu.py [--batch-size 16] [--threads 1] [--adapter DIR] [--no-lora]

Workloads: QA generation (generate_qa's own prompts and JSON schemas on the demo corpus's chunks, ingested
by the real ingest step, max_new_tokens from the local config) and judge answers (the judge's answer
prompt on the questions the transformers engine wrote in the QA workload, judge.max_new_tokens), each on
the base model and with a LoRA adapter; `--batch-size` requests per workload, handed to each engine in
one generate call. The adapter is `--adapter` (e.g. a trained one from a demo run) or, by default, one of
the demo's shape (r=16 on all seven linear projections) with peft's default init (B=0): it costs what any
adapter of that shape costs and leaves the answers as the base model's, so both rows do the same work.

Engines: transformers (the baseline), vllm with adapter_mode merged (the adapter merged into a checkpoint
that runs as a plain model), and vllm with adapter_mode lora (LoRARequest) for comparison. Each engine is
warmed up before it is timed; its start (and the merge and restart for an adapter) is shown as init.
Targets on 2 cores: vllm >= 2x transformers on base-model generation, and no slower with an adapter.
Other processes on the machine skew every row: the load average is printed before and after.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from steps.common.engines.base import EngineSettings, GenerationRequest, GenerationResult

TARGETS = {"base": 2.0, "adapter": 1.0}  # vllm tok/s over transformers tok/s, per model


@dataclass
class Measured:
    results: list[GenerationResult]
    seconds: float

    @property
    def tokens(self) -> int:
        return sum(r.completion_tokens for r in self.results)

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds


def demo_requests(work: Path, batch: int) -> tuple[list[GenerationRequest], list[dict], int]:
    """generate_qa's requests for the demo corpus (first `batch`), their schemas, and the judge's budget."""
    from pipelines.config import load_config
    from steps.common.contract import RuntimeContext
    from steps.common.residency import ResidencyPolicy
    from steps.common.storage import StorageSettings
    from steps.generate_qa.chunks import read_chunks
    from steps.generate_qa.prompts import build_request, plan_slots
    from steps.ingest import IngestInputs
    from steps.ingest import run as ingest

    config = load_config()
    context = RuntimeContext(run_id="bench", storage=StorageSettings(artifact_root=(work / "artifacts").as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(work / "scratch"))
    chunks_uri = ingest(IngestInputs(context=context, settings=config.ingest, corpus_uri=config.corpus)).chunks_uri
    settings = config.generate_qa
    requests = [build_request(slot, chunk.language, settings)
                for chunk in read_chunks(context, chunks_uri, None)
                for slot in plan_slots(chunk.chunk_id, chunk.text, settings)][:batch]
    return requests, [r.json_schema or {} for r in requests], config.judge.max_new_tokens


def judge_requests(qa: list[GenerationResult], schemas: list[dict], budget: int, batch: int,
                   adapter: str | None) -> list[GenerationRequest]:
    """The judge's answer requests on the questions of valid QA replies (cycled up to `batch`)."""
    from steps.generate_qa.prompts import parse_reply

    questions = [parsed[0] for result, schema in zip(qa, schemas)
                 if isinstance(parsed := parse_reply(result, schema), tuple)]
    if not questions:
        raise SystemExit("the transformers engine wrote no valid QA reply: no questions for the judge workload")
    return [GenerationRequest(messages=[{"role": "user", "content": questions[i % len(questions)]}],
                              max_new_tokens=budget, adapter=adapter) for i in range(batch)]


def zero_adapter(model_dir: Path, target: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"])
    get_peft_model(base, config).save_pretrained(target)
    return target


def timed(engine, requests: list[GenerationRequest]) -> Measured:
    started = time.perf_counter()
    results = engine.generate(requests)
    return Measured(results, time.perf_counter() - started)


def with_adapter(requests: list[GenerationRequest], adapter: str | None) -> list[GenerationRequest]:
    return [r.model_copy(update={"adapter": adapter}) for r in requests]


Rows = tuple[dict[tuple[str, str], Measured], dict[str, float]]


def run_engine(engine, qa: list[GenerationRequest], judge: Callable[[list[GenerationResult]], list[GenerationRequest]],
               adapter: str, models: tuple[str, ...]) -> Rows:
    """Each model's workloads (base first: a merged engine then switches once); init seconds per model.
    `judge` turns this engine's QA results into the judge workload (the baseline's, once made, for all)."""
    measured: dict[tuple[str, str], Measured] = {}
    inits: dict[str, float] = {}
    for model in models:
        name = adapter if model == "adapter" else None
        started = time.perf_counter()
        engine.generate(with_adapter(qa[:1], name))  # warm-up: starts (or switches) the engine, compiles a grammar
        inits[model] = time.perf_counter() - started
        measured[("QA generation", model)] = qa_run = timed(engine, with_adapter(qa, name))
        measured[("judge answers", model)] = timed(engine, with_adapter(judge(qa_run.results), name))
        for workload in ("QA generation", "judge answers"):  # progress: the table comes at the end
            m = measured[(workload, model)]
            print(f"{type(engine).__name__} {workload} {model}: {m.tokens} tokens in {m.seconds:.1f}s "
                  f"(init {inits[model]:.1f}s)", file=sys.stderr, flush=True)
    return measured, inits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both engines (0: torch's choice)")
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter folder (default: a B=0 all-linear r=16 one)")
    parser.add_argument("--no-lora", action="store_true", help="skip the vllm adapter_mode=lora rows")
    args = parser.parse_args()

    import torch

    from steps.common.engines.transformers_engine import TransformersEngine
    from steps.common.engines.vllm_engine import VLLMEngine
    from steps.common.models import embedded_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model_dir = embedded_checkpoint()
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        work = Path(tmp)
        adapter = str(args.adapter or zero_adapter(model_dir, work / "adapter"))
        qa, schemas, budget = demo_requests(work, args.batch_size)

        def settings(kind: str, mode: str = "merged") -> EngineSettings:
            return EngineSettings.model_validate({"kind": kind, "batch_size": args.batch_size,
                                                  "vllm": {"adapter_mode": mode}})

        made: list[GenerationRequest] = []

        def judge(results: list[GenerationResult]) -> list[GenerationRequest]:
            made[:] = made or judge_requests(results, schemas, budget, args.batch_size, None)
            return made

        started = time.perf_counter()
        baseline = TransformersEngine(settings("transformers"), model_dir)
        load_s = time.perf_counter() - started
        rows = {"transformers": run_engine(baseline, qa, judge, adapter, ("base", "adapter"))}
        rows["transformers"][1]["base"] += load_s
        baseline.close()

        merged = VLLMEngine(settings("vllm"), model_dir, work / "scratch")
        rows["vllm merged"] = run_engine(merged, qa, judge, adapter, ("base", "adapter"))
        merged.close()
        if not args.no_lora:
            started = time.perf_counter()
            lora = VLLMEngine(settings("vllm", "lora"), model_dir, work / "scratch")
            start_s = time.perf_counter() - started
            rows["vllm lora"] = run_engine(lora, qa, judge, adapter, ("adapter",))
            rows["vllm lora"][1]["adapter"] += start_s
            lora.close()

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
          f"{torch.get_num_threads()} (the vllm engine's OpenMP threads follow it), batch {args.batch_size}, "
          f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print_table(rows)


def print_table(rows: dict[str, Rows]) -> None:
    baseline = rows["transformers"][0]
    print(f"{'workload':<15}{'model':<9}{'engine':<14}{'tokens':>7}{'seconds':>9}{'tok/s':>8}{'speedup':>9}"
          f"{'init s':>8}{'same text':>11}{'target':>14}")
    for (workload, model), reference in baseline.items():
        for engine, (measured, inits) in rows.items():
            if (workload, model) not in measured:
                continue
            m = measured[(workload, model)]
            speedup = m.rate / reference.rate
            same = sum(a.text == b.text for a, b in zip(m.results, reference.results))
            target = "" if engine == "transformers" or engine == "vllm lora" else \
                f"{'pass' if speedup >= TARGETS[model] else 'FAIL'} (>={TARGETS[model]:g}x)"
            print(f"{workload:<15}{model:<9}{engine:<14}{m.tokens:>7}{m.seconds:>9.1f}{m.rate:>8.1f}"
                  f"{speedup:>8.2f}x{inits[model]:>8.1f}{same:>6}/{len(m.results):<4}{target:>14}")
    print("init s: the engine's load or start (merged: the merge and the restart on the merged checkpoint), "
          "with a first one-request call; same text: greedy outputs equal to the transformers engine's")


if __name__ == "__main__":
    main()
