"""Chunks -> filtered QA pairs: plan the requests, generate them in batches, parse and filter each reply."""

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from steps.common.engines.base import Engine, GenerationResult
from steps.common.progress import Progress
from steps.generate_qa.chunks import Chunk
from steps.generate_qa.filters import QAPair, QualityFilter, Reason
from steps.generate_qa.prompts import Slot, build_request, parse_reply, plan_slots
from steps.generate_qa.refusals import refusal
from steps.generate_qa.settings import GenerateQASettings

log = logging.getLogger(__name__)


class RejectedPair(BaseModel):
    """One line of qa_rejected.jsonl: what was generated (as far as it could be read) and why it failed."""

    reason: str
    type: str
    answerable: bool
    language: str
    chunk_id: str
    doc_id: str
    question: str = ""
    answer: str = ""
    raw: str = ""  # the model's reply when it could not be parsed
    error: str | None = None  # the engine's error, for generation_error


@dataclass
class Generated:
    accepted: list[QAPair] = field(default_factory=list)
    rejected: list[RejectedPair] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # requests, tokens, chunks without sentences


def generate_pairs(chunks: list[Chunk], engine: Engine, settings: GenerateQASettings) -> Generated:
    """All chunks' pairs, generated `engine.batch_size` chunks per call so progress moves between calls
    while each call still fills whole engine batches (every chunk contributes several requests)."""
    quality = QualityFilter(settings, [chunk.language for chunk in chunks], seed=settings.seed)
    out = Generated()
    progress = Progress(len(chunks))
    step = settings.engine.batch_size
    for start in range(0, len(chunks), step):
        batch = chunks[start:start + step]
        planned = [(chunk, slot) for chunk in batch for slot in _slots(chunk, settings, out.counts)]
        started = time.perf_counter()
        requests = [build_request(slot, chunk.language, settings) for chunk, slot in planned]
        results = engine.generate(requests) if requests else []
        out.counts["requests"] += len(planned)
        out.counts["completion_tokens"] += sum(result.completion_tokens for result in results)
        for (chunk, slot), result in zip(planned, results):
            _accept_or_reject(chunk, slot, result, quality, out)
        progress.advance(len(batch))
        log.info("generate_qa: chunks %d-%d of %d: %d requests in %.1fs, %d pairs kept so far",
                 start + 1, start + len(batch), len(chunks), len(planned), time.perf_counter() - started,
                 len(out.accepted))
    return out


def _slots(chunk: Chunk, settings: GenerateQASettings, counts: Counter[str]) -> list[Slot]:
    slots = plan_slots(chunk.chunk_id, chunk.text, settings)
    if not slots:
        counts["chunks_without_sentences"] += 1
    return slots


def _accept_or_reject(chunk: Chunk, slot: Slot, result: GenerationResult, quality: QualityFilter,
                      out: Generated) -> None:
    meta: dict[str, Any] = {"type": slot.kind, "answerable": slot.answerable, "language": chunk.language,
                            "chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id}
    parsed = parse_reply(result, slot.answerable)
    if isinstance(parsed, Reason):
        out.rejected.append(RejectedPair(reason=parsed.value, raw=result.text, error=result.error, **meta))
        return
    question, answer = parsed
    answer = answer if slot.answerable else refusal(chunk.language)
    pair = QAPair(question=question, answer=answer, context=chunk.text, **meta)
    reason = quality.check(pair)
    if reason is None:
        out.accepted.append(pair)
    else:
        out.rejected.append(RejectedPair(reason=reason.value, question=question, answer=answer, **meta))
