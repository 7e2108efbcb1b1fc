"""In-process generation with transformers: the local default (CPU, or CUDA when present).

Requests are grouped by (adapter, constrained or not) and generated in left-padded batches. JSON
schemas are enforced with xgrammar, the grammar library vLLM uses, so local and production outputs are
constrained the same way; rows of one batch may carry different schemas (one grammar per row).
"""

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steps.common.engines.base import (
    EngineSettings,
    GenerationRequest,
    GenerationResult,
    completed,
    error_result,
)
from steps.common.engines.merged_adapters import adapter_folder

log = logging.getLogger(__name__)

_Group = tuple[str | None, bool]  # (adapter folder, constrained)
# Called with (request index, token id) for every kept token of a request, as soon as it is generated.
OnToken = Callable[[int, int], None]


class TransformersEngine:
    """Loads the model once; `generate` batches internally and never raises for one bad request."""

    def __init__(self, settings: EngineSettings, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        self.settings = settings  # read at every call: a server may swap temperature and seed per call
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        # fp32 on CPU: bf16 matmuls there are slow and fp16 is inexact.
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        # local_files_only: models come from a local folder, never from a hub (HF_HUB_OFFLINE behaviour).
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model: Any = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, dtype=dtype
        ).to(self.device)
        self.model.eval()
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos])
        self.context_length: int = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._adapters: dict[str, str] = {}  # resolved adapter folder -> peft adapter name
        self._grammar_compiler: Any = None
        self._grammars: dict[str, Any] = {}  # schema JSON -> compiled grammar
        log.info("transformers engine: loaded model on %s in %.1fs", self.device, time.perf_counter() - started)

    # ---- Engine protocol -------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest], on_token: OnToken | None = None) -> list[GenerationResult]:
        """`on_token` streams each request's tokens (those its result keeps) from this thread while the batch
        runs; a batch that fails and is retried request by request streams nothing more."""
        import torch

        started = time.perf_counter()
        torch.manual_seed(self.settings.seed)  # seeded sampling: the same call gives the same outputs
        results: list[GenerationResult | None] = [None] * len(requests)
        prompts: dict[int, list[int]] = {}
        groups: dict[_Group, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            try:
                prompts[index] = self._prepare(request)
            except Exception as exc:  # noqa: BLE001 - one bad request becomes an error result
                results[index] = error_result(exc)
                continue
            groups[(request.adapter, request.json_schema is not None)].append(index)

        for (adapter, _), indices in groups.items():
            # Similar lengths together: less padding per batch.
            indices.sort(key=lambda i: len(prompts[i]))
            size = self.settings.batch_size
            for start in range(0, len(indices), size):
                batch = indices[start:start + size]
                for index, result in zip(batch, self._generate_isolated(adapter, batch, requests, prompts,
                                                                        on_token)):
                    results[index] = result

        return completed("transformers", results, started)

    def close(self) -> None:
        self.model = None
        self._grammars.clear()

    # ---- preparation -----------------------------------------------------------------------------
    def _prepare(self, request: GenerationRequest) -> list[int]:
        """Token ids of the chat prompt; loads the adapter and grammar, so their errors stay per request."""
        text = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        needed = len(ids) + request.max_new_tokens
        if needed > self.context_length:
            raise ValueError(f"prompt of {len(ids)} tokens + max_new_tokens {request.max_new_tokens} exceeds "
                             f"the model context of {self.context_length} tokens")
        if request.adapter is not None:
            self._adapter_name(request.adapter)
        if request.json_schema is not None:
            self._grammar(request.json_schema)
        return ids

    def _adapter_name(self, adapter: str) -> str:
        """Load a LoRA adapter folder once; peft keeps every loaded adapter and switches by name."""
        folder = str(adapter_folder(adapter))
        if folder in self._adapters:
            return self._adapters[folder]
        name = "a" + hashlib.sha256(folder.encode()).hexdigest()[:12]
        if not self._adapters:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=name, local_files_only=True)
        else:
            self.model.load_adapter(folder, adapter_name=name, local_files_only=True)
        self.model.eval()
        self._adapters[folder] = name
        log.info("transformers engine: loaded adapter %s (%d loaded)", name, len(self._adapters))
        return name

    def _grammar(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema)  # not sorted: property order is the order the model writes them in
        if key not in self._grammars:
            import xgrammar as xgr

            if self._grammar_compiler is None:
                # The model's vocab can be larger than the tokenizer's (padding rows): use the model's.
                info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size)
                self._grammar_compiler = xgr.GrammarCompiler(info)
            started = time.perf_counter()
            # Compact JSON: free whitespace would let a small model spend its token budget on spaces.
            self._grammars[key] = self._grammar_compiler.compile_json_schema(key, any_whitespace=False)
            log.info("transformers engine: compiled a JSON schema grammar in %.1fs (%d cached)",
                     time.perf_counter() - started, len(self._grammars))
        return self._grammars[key]

    # ---- generation ------------------------------------------------------------------------------
    def _generate_isolated(self, adapter: str | None, batch: list[int], requests: list[GenerationRequest],
                           prompts: dict[int, list[int]], on_token: OnToken | None = None) -> list[GenerationResult]:
        """Generate one batch; if it fails, retry its requests one by one so only the culprit errors."""
        try:
            return self._generate_batch(adapter, [requests[i] for i in batch], [prompts[i] for i in batch],
                                        batch, on_token)
        except Exception as exc:  # noqa: BLE001
            if len(batch) == 1:
                return [error_result(exc)]
            log.warning("transformers engine: batch of %d failed (%s); retrying one by one",
                        len(batch), type(exc).__name__)
            return [self._generate_isolated(adapter, [i], requests, prompts)[0] for i in batch]

    def _generate_batch(self, adapter: str | None, requests: list[GenerationRequest], prompts: list[list[int]],
                        indices: list[int] | None = None, on_token: OnToken | None = None
                        ) -> list[GenerationResult]:
        import torch

        # Left padding: every row's last prompt token sits at the same position, where generation starts.
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": max(r.max_new_tokens for r in requests), "pad_token_id": pad}
        if self.settings.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.settings.temperature, top_p=1.0, top_k=0)
        else:
            kwargs["do_sample"] = False
        if requests[0].json_schema is not None:
            import xgrammar as xgr

            # One processor per generate call (it keeps matcher state), one grammar per row.
            grammars = [self._grammar(r.json_schema) for r in requests if r.json_schema is not None]
            kwargs["logits_processor"] = [xgr.contrib.hf.LogitsProcessor(grammars)]

        clock = _TokenStreamer(indices or list(range(len(requests))), [r.max_new_tokens for r in requests],
                               self.eos_ids, on_token)
        with self._adapter_scope(adapter), torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=attention, streamer=clock, **kwargs)
        return [self._result(row[width:].tolist(), request.max_new_tokens, clock.first_token_at)
                for row, request in zip(output, requests)]

    def _adapter_scope(self, adapter: str | None) -> Any:
        """Activate `adapter`, or run the bare base model when adapters are loaded but none is asked for."""
        import contextlib

        if adapter is not None:
            self.model.set_adapter(self._adapter_name(adapter))
            return contextlib.nullcontext()
        return self.model.disable_adapter() if self._adapters else contextlib.nullcontext()

    def _result(self, tokens: list[int], max_new_tokens: int, first_token_at: float | None) -> GenerationResult:
        # A shorter request in a longer batch is cut at its own budget.
        tokens = tokens[:max_new_tokens]
        stop = next((i for i, token in enumerate(tokens) if token in self.eos_ids), None)
        kept = tokens if stop is None else tokens[:stop]
        return GenerationResult(
            text=self.tokenizer.decode(kept, skip_special_tokens=True),
            finish_reason="length" if stop is None else "stop",
            completion_tokens=len(kept) + (stop is not None),
            first_token_at=first_token_at,
        )


class _TokenStreamer:
    """A `generate(streamer=...)`: `put` is called with the prompt first, then with one token per row after
    each decoding step (the first after prefill). Notes when the first new tokens exist and, with
    `on_token`, hands each row's tokens on until the row's own end (EOS or its max_new_tokens), exactly
    the tokens `_result` keeps."""

    def __init__(self, indices: list[int], limits: list[int], eos_ids: set[int], on_token: OnToken | None) -> None:
        self._indices, self._left, self._eos, self._on_token = indices, list(limits), eos_ids, on_token
        self._puts = 0
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        self._puts += 1
        if self._puts == 2:
            self.first_token_at = time.perf_counter()
        if self._puts < 2 or self._on_token is None:
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self._left[row] <= 0:
                continue
            if token in self._eos:
                self._left[row] = 0
                continue
            self._left[row] -= 1
            self._on_token(self._indices[row], token)

    def end(self) -> None:
        pass

