"""Chunks -> filtered QA pairs: plan the requests, generate them in batches, parse and filter each reply."""

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from steps.common.chunks import Chunk
from steps.common.engines.base import Engine, GenerationResult
from steps.common.grading import refusal
from steps.common.progress import Progress
from steps.common.qa_dataset import QAPair
from steps.generate_qa.filters import QualityFilter, Reason
from steps.generate_qa.prompts import ReplyError, Slot, build_request, parse_reply, plan_slots, qa_schema
from steps.generate_qa.settings import GenerateQASettings

log = logging.getLogger(__name__)
# Why a chunk got fewer requests than asked for: it has fewer distinct sentences worth a question.
TOO_FEW_SENTENCES = "too_few_sentences"


class TooManyFailedRequests(RuntimeError):
    """More generation requests failed than `max_failed_request_fraction` allows: nothing is published."""


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
    detail: str | None = None  # the schema rule and path, for schema_invalid


@dataclass
class ChunkTally:
    """Pairs asked for one chunk, pairs it produced, and why the rest are missing."""

    requested: int
    produced: int = 0
    shortfall: Counter[str] = field(default_factory=Counter)


@dataclass
class Generated:
    accepted: list[QAPair] = field(default_factory=list)
    rejected: list[RejectedPair] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # requests, tokens, chunks without sentences
    per_chunk: dict[str, ChunkTally] = field(default_factory=dict)


def generate_pairs(chunks: list[Chunk], engine: Engine, settings: GenerateQASettings) -> Generated:
    """All chunks' pairs, generated `engine.batch_size` chunks per call so progress moves between calls
    while each call still fills whole engine batches (every chunk contributes several requests).

    Raises TooManyFailedRequests when the engine failed more requests than the settings allow."""
    quality = QualityFilter(settings, [chunk.language for chunk in chunks], seed=settings.seed)
    out = Generated()
    progress = Progress(len(chunks))
    step = settings.engine.batch_size
    for start in range(0, len(chunks), step):
        batch = chunks[start:start + step]
        planned = [(chunk, slot) for chunk in batch for slot in _slots(chunk, settings, out)]
        started = time.perf_counter()
        requests = [build_request(slot, chunk.language, settings) for chunk, slot in planned]
        results = engine.generate(requests) if requests else []
        out.counts["requests"] += len(planned)
        out.counts["completion_tokens"] += sum(result.completion_tokens for result in results)
        for (chunk, slot), result in zip(planned, results, strict=True):
            _accept_or_reject(chunk, slot, qa_schema(settings, slot.answerable), result, quality, out)
        progress.advance(len(batch))
        log.info("generate_qa: chunks %d-%d of %d: %d requests in %.1fs, %d pairs kept so far",
                 start + 1, start + len(batch), len(chunks), len(planned), time.perf_counter() - started,
                 len(out.accepted))
    check_failures(out, settings.max_failed_request_fraction)
    return out


def check_failures(out: Generated, max_fraction: float) -> None:
    """Fail rather than publish a dataset an outage has thinned: too many requests the engine failed."""
    failed = [pair for pair in out.rejected if pair.reason == Reason.GENERATION_ERROR]
    requests = out.counts["requests"]
    if requests and len(failed) / requests > max_fraction:
        # Engine errors are status codes, timeouts and kinds, never prompt text (the engines guarantee it).
        errors = Counter(pair.error or "unknown" for pair in failed)
        raise TooManyFailedRequests(
            f"generate_qa: the engine failed {len(failed)} of {requests} requests "
            f"({len(failed) / requests:.0%}, more than max_failed_request_fraction={max_fraction:g}); "
            f"errors: {dict(errors.most_common(5))}. Nothing was published: fix the endpoint or its settings "
            "(openai.response_format_style, timeout_s) and run again")


def _slots(chunk: Chunk, settings: GenerateQASettings, out: Generated) -> list[Slot]:
    slots = plan_slots(chunk.chunk_id, chunk.text, settings)
    if not slots:
        out.counts["chunks_without_sentences"] += 1
    tally = out.per_chunk[chunk.chunk_id] = ChunkTally(settings.pairs_per_chunk + settings.unanswerable_per_chunk)
    if len(slots) < tally.requested:
        tally.shortfall[TOO_FEW_SENTENCES] += tally.requested - len(slots)
    return slots


def _accept_or_reject(chunk: Chunk, slot: Slot, schema: dict[str, Any], result: GenerationResult,
                      quality: QualityFilter, out: Generated) -> None:
    meta: dict[str, Any] = {"type": slot.kind, "answerable": slot.answerable, "language": chunk.language,
                            "chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id}
    tally = out.per_chunk[chunk.chunk_id]
    parsed = parse_reply(result, schema)
    if isinstance(parsed, ReplyError):
        out.rejected.append(RejectedPair(reason=parsed.reason.value, raw=result.text, error=result.error,
                                         detail=parsed.detail, **meta))
        tally.shortfall[parsed.reason.value] += 1
        return
    question, answer = parsed
    answer = answer if slot.answerable else refusal(chunk.language)
    pair = QAPair(question=question, answer=answer, context=chunk.text, **meta)
    reason = quality.check(pair)
    if reason is None:
        out.accepted.append(pair)
        tally.produced += 1
    else:
        out.rejected.append(RejectedPair(reason=reason.value, question=question, answer=answer, **meta))
        tally.shortfall[reason.value] += 1
