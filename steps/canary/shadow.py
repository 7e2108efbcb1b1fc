"""Quality on a sampled shadow set, judged exactly as the judge step judges (its rubric, schema, fail-closed
parsing from steps/common/grading.py).

A seeded sample of `qa_test.jsonl` is split into one batch per analysis interval. Each batch is answered
by both adapters through a replica (by served name, not through the route: users never see these
answers) and graded by the self-hosted judge. Batches run one at a time in a background daemon thread,
so a slow judge never delays the SLO checks, and `stop()` returns at once, so it never delays a rollback
either; `collect` folds whatever has finished into the tally. Only grades, reference scores and counts are
kept, never question or answer text.
"""

import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from pydantic import BaseModel

from steps.canary.analysis import QualityTally
from steps.canary.settings import ShadowSettings
from steps.common.engines.base import Engine
from steps.common.grading import Verdict, answer_request, parse_verdict, refusal_ok, verdict_request
from steps.common.qa_dataset import QAPair, load_pairs
from steps.common.reference_scores import ReferenceScores, score_answer

log = logging.getLogger(__name__)


class ShadowItem(BaseModel):
    batch: int
    index: int  # position in the sampled shadow set
    challenger: str  # grade counted (fail closed)
    champion: str
    challenger_error: str | None = None  # why the challenger's verdict was unusable
    champion_error: str | None = None
    # Deterministic scores against the reference answer and chunk (as the judge step's; numbers, no text).
    challenger_scores: ReferenceScores | None = None
    champion_scores: ReferenceScores | None = None


def sample_items(path: Path, size: int, seed: int) -> list[QAPair]:
    """A seeded sample of at most `size` test items (all of them when the set is smaller)."""
    return load_pairs(path, max_items=size, seed=seed)


def split_batches(n_items: int, batches: int) -> list[range]:
    per = math.ceil(n_items / batches) if batches else n_items
    return [range(k * per, min(n_items, (k + 1) * per)) for k in range(batches)]


def judge_batch(batch: int, indices: range, items: list[QAPair], answerer: Engine, judge: Engine,
                names: dict[str, str], settings: ShadowSettings,
                stop: threading.Event | None = None) -> list[ShadowItem]:
    """Answers from both adapters, one verdict each; unusable ones count against the challenger.

    When `stop` is set once the answers are in, the batch ends without judging them ([])."""
    chosen = [items[i] for i in indices]
    if not chosen:
        return []
    roles = ("challenger", "champion")
    requests = [answer_request(item, names[role], settings.max_new_tokens) for role in roles for item in chosen]
    answers = answerer.generate(requests)
    if stop is not None and stop.is_set():
        return []
    verdicts: list[Verdict] = [Verdict(grade=None, error=f"no answer to judge ({a.error or 'generation error'})")
                               for a in answers]
    to_judge = [k for k, a in enumerate(answers) if a.finish_reason != "error"]
    judged = judge.generate([verdict_request(chosen[k % len(chosen)], answers[k].text,
                                             settings.judge_max_new_tokens) for k in to_judge])
    for k, result in zip(to_judge, judged, strict=True):
        verdicts[k] = parse_verdict(result)
    out = []
    n = len(chosen)
    for j, index in enumerate(indices):
        item, mine, theirs = chosen[j], verdicts[j], verdicts[n + j]
        out.append(ShadowItem(batch=batch, index=index,
                              challenger=mine.graded("candidate", refusal_ok(item, answers[j].text)),
                              champion=theirs.graded("champion", refusal_ok(item, answers[n + j].text)),
                              challenger_error=mine.error, champion_error=theirs.error,
                              challenger_scores=score_answer(answers[j].text, item.answer, item.context, item.language),
                              champion_scores=score_answer(answers[n + j].text, item.answer, item.context,
                                                           item.language)))
    return out


class ShadowRunner:
    """Runs shadow batches one at a time in a daemon thread; the caller folds finished ones into a tally.

    The runner owns both engines and closes them when its thread ends (after the batch in progress)."""

    def __init__(self, items: list[QAPair], batches: int, answerer: Engine, judge: Engine,
                 names: dict[str, str], settings: ShadowSettings) -> None:
        self.items = items
        self.ranges = split_batches(len(items), batches)
        self.answerer, self.judge, self.names, self.settings = answerer, judge, names, settings
        self._pending: dict[int, Future[list[ShadowItem]]] = {}
        self._queue: queue.Queue[tuple[int, Future[list[ShadowItem]]] | None] = queue.Queue()
        self._stopped = threading.Event()
        # A daemon: a step that decided must not wait at exit for a judge call still in flight.
        self._thread = threading.Thread(target=self._work, name="canary-shadow", daemon=True)
        self._thread.start()

    def submit(self, batch: int) -> None:
        if (batch < len(self.ranges) and self.ranges[batch] and batch not in self._pending
                and not self._stopped.is_set()):
            future: Future[list[ShadowItem]] = Future()
            self._pending[batch] = future
            self._queue.put((batch, future))

    def _work(self) -> None:
        try:
            while (job := self._queue.get()) is not None:
                batch, future = job
                if self._stopped.is_set() or not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(judge_batch(batch, self.ranges[batch], self.items, self.answerer, self.judge,
                                                  self.names, self.settings, self._stopped))
                except BaseException as exc:  # noqa: BLE001 - reported by collect() from the future
                    future.set_exception(exc)
        finally:
            for engine in (self.answerer, self.judge):
                try:
                    engine.close()
                except Exception as exc:  # noqa: BLE001 - closing is best effort, nobody waits for it
                    log.warning("canary: closing a shadow engine failed: %s", type(exc).__name__)

    def collect(self, tally: QualityTally, records: list[ShadowItem], timeout_s: float | None = None) -> None:
        """Fold finished batches (all of them, waiting up to `timeout_s`, when given) into `tally`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for batch in sorted(self._pending):
            future = self._pending[batch]
            if deadline is not None:
                try:
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
                except FutureTimeout:
                    tally.errors.append(f"shadow batch {batch}: not finished within {timeout_s:g}s")
                    future.cancel()
                    del self._pending[batch]
                    continue
                except Exception:  # noqa: BLE001, S110 - reported below from future.exception()
                    pass
            if not future.done():
                continue
            del self._pending[batch]
            error = future.exception()
            if error is not None:
                log.warning("canary: shadow batch %d failed: %s", batch, error)
                tally.errors.append(f"shadow batch {batch}: {type(error).__name__}: {str(error)[:200]}")
                continue
            for item in future.result():
                tally.add(item.challenger, item.champion)
                tally.unusable += item.challenger_error is not None
                records.append(item)

    def stop(self) -> None:
        """Stop without waiting: queued batches are dropped, the running one skips its judging."""
        self._stopped.set()
        for future in self._pending.values():
            future.cancel()
        self._queue.put(None)
