"""What the app needs from a model: token counting and batched generation, with each request's text
streamed as it is generated. `EngineBackend` wraps the `transformers` engine; tests may pass any object
with the same methods (see `Backend`)."""

import logging
import time
from pathlib import Path
from typing import Any, Protocol

from pipelines.serve.batching import OnText, Sampling
from steps.common.engines.base import EngineSettings, GenerationRequest, GenerationResult

log = logging.getLogger("eurolora.serve")


class Backend(Protocol):
    root: str  # where the base model came from (listed as `root` in /v1/models)
    context_length: int

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """Tokens of the chat prompt as the engine will build it; ValueError for an unusable conversation."""
        ...

    def generate(self, requests: list[GenerationRequest], sampling: Sampling,
                 on_text: OnText | None = None) -> list[GenerationResult]:
        """Called from one worker thread only. The pieces given to `on_text` for a request concatenate to a
        prefix of its result's text (the rest, if any, is what the caller sends last)."""
        ...

    def close(self) -> None: ...


class EngineBackend:
    """The `transformers` engine (`steps.common.engines.transformers_engine`) behind the server.

    Per-request sampling: the engine reads `temperature` and `seed` from its `settings` at every
    `generate` call and the batcher runs one call at a time per (temperature, seed), so each call gets
    a copy of the settings with the request's values. Decoding is greedy at temperature 0; `top_p` and
    penalties are not supported by the engine (accepted and ignored by the API).
    """

    def __init__(self, model_dir: Path, *, max_batch: int, seed: int = 0, threads: int | None = None) -> None:
        import torch
        from transformers import AutoTokenizer

        from steps.common.engines.transformers_engine import TransformersEngine

        if threads is not None:
            torch.set_num_threads(threads)
        started = time.perf_counter()
        self.root = str(model_dir)
        self._settings = EngineSettings(model=str(model_dir), batch_size=max_batch, temperature=0.0, seed=seed)
        self.engine: Any = TransformersEngine(self._settings, model_dir)
        # Our own tokenizer instance: the engine's is used from the worker thread while we count here.
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.context_length = int(getattr(self.engine, "context_length", 2048))
        log.info("serve: model loaded in %.1fs (context %d tokens)", time.perf_counter() - started,
                 self.context_length)

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        try:
            text = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # noqa: BLE001 - the chat template refused the conversation
            raise ValueError(f"the model's chat template refused these messages ({type(exc).__name__})") from None
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, requests: list[GenerationRequest], sampling: Sampling,
                 on_text: OnText | None = None) -> list[GenerationResult]:
        self.engine.settings = self._settings.model_copy(
            update={"temperature": sampling.temperature, "seed": sampling.seed})
        if on_text is None:
            return self.engine.generate(requests)
        decoders = [_Detokenizer(self.engine.tokenizer) for _ in requests]

        def on_token(index: int, token: int) -> None:
            piece = decoders[index].add(token)
            if piece:
                on_text(index, piece)

        return self.engine.generate(requests, on_token=on_token)

    def close(self) -> None:
        self.engine.close()


class _Detokenizer:
    """Incremental decoding of one request's tokens (in the engine's thread, with the engine's tokenizer).

    Decodes everything so far and hands on only what is new, holding text back while it ends in an
    incomplete UTF-8 sequence (a byte-level token can be half a character): the pieces concatenate to
    what `decode(tokens)` gives at the end, as the engine's result text is built."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._tokens: list[int] = []
        self._sent = ""

    def add(self, token: int) -> str:
        self._tokens.append(token)
        text = self._tokenizer.decode(self._tokens, skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(self._sent):
            return ""
        piece, self._sent = text[len(self._sent):], text
        return piece
