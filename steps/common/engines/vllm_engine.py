"""In-process generation with vLLM's offline engine (`vllm.LLM`): the GPU pods' engine, and on CPU too.

- All requests of one `generate` call go to vLLM in one `llm.chat` call: its scheduler batches them.
- JSON schemas are enforced by vLLM's structured outputs (xgrammar, compact JSON like the transformers
  engine), with the same schemas as the other engines.
- Adapters: `adapter_mode: lora` sends each adapter folder as a `LoRARequest` to one engine;
  `adapter_mode: merged` merges each adapter into a checkpoint of its own and runs it as a plain model,
  one model at a time (an engine restart per switch, so callers send one adapter's requests together);
  `auto` is merged on CPU (where vLLM's LoRA path is slow) and lora on a GPU.
- Requests vLLM would refuse (prompt + max_new_tokens beyond max_model_len, a missing adapter, a rank
  above max_lora_rank) become error results before anything is sent; if a batch still fails, its
  requests are retried one by one so that only the culprit errors. A dead engine raises.
- `LLM()` spawns engine processes (vLLM's CPU platform forces the spawn start method): the process that
  builds this engine must import safely (step processes do: `pipelines.step_process` and Hera's runner
  guard their entry points). `close()` shuts the engine processes down; none outlives it.
- The engine processes get as many OpenMP threads as the calling process has torch threads (the step's
  thread setting), unpinned: on a machine shared with other processes pinning gains nothing.
"""

import gc
import logging
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from steps.common.engines.base import (
    EngineSettings,
    GenerationRequest,
    GenerationResult,
    completed,
    error_result,
)
from steps.common.engines.merged_adapters import MergedAdapters, adapter_folder, adapter_rank

log = logging.getLogger(__name__)

_BASE: Path | None = None  # the model key of the bare base model


class VLLMEngine:
    """One vLLM engine at a time; `generate` never raises for one bad request. Close it when done."""

    def __init__(self, settings: EngineSettings, model_dir: Path, scratch: Path) -> None:
        import torch
        from transformers import AutoTokenizer

        self.settings = settings
        self._options = settings.vllm
        self._model_dir = model_dir
        self._threads = torch.get_num_threads()
        # The prompt-length check happens here, before vLLM sees a request (same tokenizer as the engine).
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        merged = self._options.resolved_adapter_mode(gpu=torch.cuda.is_available()) == "merged"
        self._merged = MergedAdapters(model_dir, scratch) if merged else None
        self._llm: Any = None
        self._loaded: Path | None = _BASE  # the model key the running engine serves (merged mode)
        self._lora_ids: dict[Path, int] = {}
        self.init_s = 0.0  # seconds spent starting engines, for benchmarks and logs
        if self._merged is None:  # lora mode: one engine for everything, started now (fails fast)
            self._start(model_dir, enable_lora=True)

    # ---- Engine protocol -------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        started = time.perf_counter()
        results: list[GenerationResult | None] = [None] * len(requests)
        groups: dict[Path | None, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            try:
                groups[self._prepare(request)].append(index)
            except Exception as exc:  # noqa: BLE001 - one bad request becomes an error result
                results[index] = error_result(exc)
        # The model already running first: one engine switch fewer.
        for key in sorted(groups, key=lambda k: k != self._loaded):
            indices = groups[key]
            try:
                self._serve(key)
            except _AdapterMergeFailed as exc:  # this adapter's requests fail, the others go on
                for index in indices:
                    results[index] = error_result(exc.__cause__ or exc)
                continue
            for index, result in zip(indices, self._run_isolated([requests[i] for i in indices])):
                results[index] = result
        return completed("vllm", results, started)

    def close(self) -> None:
        self._stop()
        if self._merged is not None:
            self._merged.close()

    # ---- preparation -----------------------------------------------------------------------------
    def _prepare(self, request: GenerationRequest) -> Path | None:
        """The model key the request runs on; raises what vLLM would refuse for this request alone."""
        ids = self._tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=False)
        limit = self._options.max_model_len
        if len(ids) + request.max_new_tokens > limit:
            raise ValueError(f"prompt of {len(ids)} tokens + max_new_tokens {request.max_new_tokens} exceeds "
                             f"the engine's max_model_len of {limit} tokens")
        if request.adapter is None:
            return _BASE
        folder = adapter_folder(request.adapter)
        if self._merged is None and (rank := adapter_rank(folder)) > self._options.max_lora_rank:
            raise ValueError(f"adapter {folder.name} has LoRA rank {rank}, above vllm.max_lora_rank "
                             f"{self._options.max_lora_rank}")
        return folder if self._merged is not None else _BASE

    # ---- generation ------------------------------------------------------------------------------
    def _run_isolated(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """One batched call; if vLLM refuses it, each request alone so only the culprit errors."""
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            return self._run(requests)
        except EngineDeadError:
            raise  # not one bad request: the engine is gone
        except Exception as exc:  # noqa: BLE001
            if len(requests) == 1:
                return [error_result(exc)]
            log.warning("vllm engine: batch of %d failed (%s); retrying one by one", len(requests),
                        type(exc).__name__)
            return [self._run_isolated([request])[0] for request in requests]

    def _run(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        outputs = self._llm.chat([r.messages for r in requests], [self._sampling(r) for r in requests],
                                 use_tqdm=False, lora_request=[self._lora(r) for r in requests])
        return [_result(output) for output in outputs]

    def _sampling(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = None
        if request.json_schema is not None:
            # Compact JSON: free whitespace would let a small model spend its token budget on spaces.
            structured = StructuredOutputsParams(json=request.json_schema, disable_any_whitespace=True)
        sampled = self.settings.temperature > 0
        return SamplingParams(max_tokens=request.max_new_tokens, temperature=self.settings.temperature,
                              top_p=1.0, top_k=0, seed=self.settings.seed if sampled else None,
                              structured_outputs=structured)

    def _lora(self, request: GenerationRequest) -> Any:
        if request.adapter is None or self._merged is not None:
            return None
        from vllm.lora.request import LoRARequest

        folder = adapter_folder(request.adapter)
        lora_id = self._lora_ids.setdefault(folder, len(self._lora_ids) + 1)
        return LoRARequest(f"adapter-{lora_id}", lora_id, str(folder))

    # ---- engine lifecycle ------------------------------------------------------------------------
    def _serve(self, key: Path | None) -> None:
        """Make the running engine serve `key` (merged mode: the base model or one merged adapter)."""
        if self._llm is not None and (self._merged is None or key == self._loaded):
            return
        checkpoint = self._model_dir
        if key is not None and self._merged is not None:
            try:
                checkpoint = self._merged.checkpoint(key)
            except Exception as exc:
                raise _AdapterMergeFailed(f"adapter {key.name} could not be merged") from exc
        self._stop()
        self._start(checkpoint, enable_lora=self._merged is None)
        self._loaded = key

    def _start(self, checkpoint: Path, enable_lora: bool) -> None:
        from vllm import LLM

        options, started = self._options, time.perf_counter()
        lora: dict[str, Any] = {}
        if enable_lora:
            lora = {"enable_lora": True, "max_lora_rank": options.max_lora_rank, "max_loras": options.max_loras}
        with _engine_environment(self._threads, options.cpu_kv_cache_gib, options.start_timeout_s):
            self._llm = LLM(model=str(checkpoint), tokenizer=str(checkpoint), dtype=options.dtype,
                            seed=self.settings.seed, max_model_len=options.max_model_len,
                            gpu_memory_utilization=options.gpu_memory_utilization,
                            enforce_eager=options.enforce_eager, max_num_seqs=max(self.settings.batch_size, 1),
                            **lora)
        elapsed = time.perf_counter() - started
        self.init_s += elapsed
        log.info("vllm engine: started on %s in %.1fs (%d threads%s)", checkpoint.name, elapsed, self._threads,
                 ", LoRA" if enable_lora else "")

    def _stop(self) -> None:
        """Shut the engine processes down and wait for them (vLLM's own shutdown joins them)."""
        if self._llm is None:
            return
        llm, self._llm = self._llm, None
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
        multiprocessing.active_children()  # reaps the engine process vLLM killed (no zombie left behind)


class _AdapterMergeFailed(RuntimeError):
    pass


@contextmanager
def _engine_environment(threads: int, kv_cache_gib: int, start_timeout_s: float) -> Iterator[None]:
    """Environment the engine processes inherit while they are spawned; the caller's is restored after."""
    values = {
        "OMP_NUM_THREADS": str(threads),
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # threads as the step says, not one pinned core
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),  # read on CPU only
        "VLLM_ENGINE_READY_TIMEOUT_S": str(max(1, round(start_timeout_s))),  # LLM() raises past it
        "VLLM_NO_USAGE_STATS": "1",  # nothing leaves the machine
        "HF_HUB_OFFLINE": "1",  # models come from local folders, never from a hub
    }
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _result(output: Any) -> GenerationResult:
    completion = output.outputs[0]
    if completion.finish_reason not in ("stop", "length"):
        return GenerationResult(text=completion.text, finish_reason="error",
                                error=f"vLLM finished the request with {completion.finish_reason!r}")
    return GenerationResult(text=completion.text, finish_reason=completion.finish_reason,
                            completion_tokens=len(completion.token_ids))

