"""Drive the engines: answers from candidate and champion, deterministic checks, verdicts, preferences."""

import logging
import time

from steps.common.engines.base import Engine, GenerationRequest, GenerationResult
from steps.common.grading import Role, Verdict, answer_request, parse_verdict, verdict_request
from steps.common.progress import Progress
from steps.common.qa_dataset import QAPair
from steps.common.reference_scores import score_answer
from steps.judge.checks import LanguageChecker, check_answer
from steps.judge.gate import Preference
from steps.judge.records import AnswerRecord, ItemRecord
from steps.judge.settings import JudgeSettings
from steps.judge.verdicts import combine_preferences, parse_preference, preference_request

log = logging.getLogger(__name__)


def _generate(engine: Engine, requests: list[GenerationRequest], batch_size: int, progress: Progress
              ) -> list[GenerationResult]:
    results: list[GenerationResult] = []
    for start in range(0, len(requests), batch_size):
        chunk = requests[start:start + batch_size]
        out = engine.generate(chunk)
        if len(out) != len(chunk):
            raise RuntimeError(f"engine returned {len(out)} results for {len(chunk)} requests")
        results.extend(out)
        progress.advance(len(chunk))
    return results


def evaluate(items: list[QAPair], generator: Engine, judge: Engine, adapters: dict[Role, str | None],
             settings: JudgeSettings) -> tuple[list[ItemRecord], dict[str, float]]:
    """Per-item records and timings; `adapters` maps candidate/champion to a local adapter folder or None."""
    roles: tuple[Role, ...] = ("candidate", "champion")
    n = len(items)
    progress = Progress(n * (4 + (2 if settings.pairwise else 0)))
    timings: dict[str, float] = {}
    # Built first: a test-set language the detector does not know fails before any generation.
    languages = LanguageChecker([item.language for item in items], seed=settings.gate.seed)

    started = time.perf_counter()
    answers: dict[Role, list[GenerationResult]] = {
        role: _generate(generator,
                        [answer_request(item, adapters[role], settings.max_new_tokens) for item in items],
                        settings.engine.batch_size, progress)
        for role in roles
    }
    timings["generation"] = time.perf_counter() - started
    log.info("generated %d answers for each of candidate and champion in %.1fs", n, timings["generation"])

    started = time.perf_counter()
    verdicts = _judge_answers(items, answers, judge, settings, progress)
    orders = _judge_pairs(items, answers, judge, settings, progress) if settings.pairwise else [None] * n
    timings["judging"] = time.perf_counter() - started
    log.info("judged %d answers%s in %.1fs", 2 * n, " and pairs" if settings.pairwise else "",
             timings["judging"])

    records = []
    for index, item in enumerate(items):
        recorded = {}
        for role in roles:
            result, verdict = answers[role][index], verdicts[role][index]
            checks = check_answer(item, result, languages, settings.length)
            recorded[role] = AnswerRecord(
                text=result.text, finish_reason=result.finish_reason,
                completion_tokens=result.completion_tokens, checks=checks,
                scores=score_answer(result.text, item.answer, item.context, item.language),
                verdict=verdict, grade=verdict.graded(role, checks.refusal_ok),
            )
        records.append(ItemRecord(
            index=index, question=item.question, reference=item.answer, type=item.type,
            language=item.language, answerable=item.answerable, doc_id=item.doc_id, chunk_id=item.chunk_id,
            candidate=recorded["candidate"], champion=recorded["champion"],
            preference=_preference(orders[index]) if settings.pairwise else None,
            preference_orders=orders[index],
        ))
    return records, timings


def _judge_answers(items: list[QAPair], answers: dict[Role, list[GenerationResult]], judge: Engine,
                   settings: JudgeSettings, progress: Progress) -> dict[Role, list[Verdict]]:
    """One verdict per answer, both models in shared batches; a failed generation is not judged (unusable)."""
    verdicts = {role: [Verdict(grade=None, error="no answer to judge (generation error)") for _ in items]
                for role in answers}
    judged = [(role, i) for role, results in answers.items()
              for i, result in enumerate(results) if result.finish_reason != "error"]
    progress.advance(len(answers) * len(items) - len(judged))
    requests = [verdict_request(items[i], answers[role][i].text, settings.judge_max_new_tokens)
                for role, i in judged]
    results = _generate(judge, requests, settings.judge_engine.batch_size, progress)
    for (role, i), result in zip(judged, results):
        verdicts[role][i] = parse_verdict(result)
    return verdicts


def _preference(orders: tuple[Preference, Preference] | None) -> Preference:
    """The pair's preference; a pair not judged (a failed generation) goes to the champion (fail closed)."""
    return "champion" if orders is None else combine_preferences(*orders)


def _judge_pairs(items: list[QAPair], answers: dict[Role, list[GenerationResult]], judge: Engine,
                 settings: JudgeSettings, progress: Progress) -> list[tuple[Preference, Preference] | None]:
    """Each pair judged in both orders (candidate first, champion first); None where a generation failed."""
    judged = [i for i in range(len(items))
              if all(answers[role][i].finish_reason != "error" for role in ("candidate", "champion"))]
    progress.advance(2 * (len(items) - len(judged)))
    budget = settings.judge_max_new_tokens
    requests = []
    for i in judged:
        candidate, champion = answers["candidate"][i].text, answers["champion"][i].text
        requests += [preference_request(items[i], candidate, champion, budget),
                     preference_request(items[i], champion, candidate, budget)]
    results = _generate(judge, requests, settings.judge_engine.batch_size, progress)
    orders: list[tuple[Preference, Preference] | None] = [None] * len(items)
    for k, i in enumerate(judged):
        orders[i] = (parse_preference(results[2 * k], candidate_first=True),
                     parse_preference(results[2 * k + 1], candidate_first=False))
    return orders
