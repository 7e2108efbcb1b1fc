"""Whether the candidate won or lost an item against the champion, and why: the report's examples.

A 135M judge grades almost every answer A, so grades alone rarely separate the two models. Ties on the
grade are broken by the deterministic checks, the gated ones first (stopped with EOS, refusal right),
then length and language (an undetermined language counts for neither side), then by the pairwise
preference when it was judged. Items equal on all of these are ties.
"""

from typing import Literal

from steps.judge.checks import AnswerChecks
from steps.judge.records import ItemRecord

Outcome = Literal["win", "loss", "tie"]
_GRADE = {"A": 2, "B": 1, "C": 0}
_GATED = ("stopped", "refusal_ok")
_OTHER = ("length_ok", "language_ok")
_PREFERENCE = {"candidate": 1, "champion": -1, "tie": 0, None: 0}


def _difference(candidate: AnswerChecks, champion: AnswerChecks, names: tuple[str, ...]) -> int:
    """Checks the candidate passed minus those the champion passed; an undetermined check decides nothing."""
    pairs = ((getattr(candidate, name), getattr(champion, name)) for name in names)
    return sum(int(c) - int(h) for c, h in pairs if c is not None and h is not None)


def margin(record: ItemRecord) -> tuple[int, int, int, int]:
    """Candidate minus champion on (grade, gated checks, other checks, preference), compared in order."""
    candidate, champion = record.candidate, record.champion
    return (_GRADE[candidate.grade] - _GRADE[champion.grade],
            _difference(candidate.checks, champion.checks, _GATED),
            _difference(candidate.checks, champion.checks, _OTHER),
            _PREFERENCE[record.preference])


def outcome(record: ItemRecord) -> Outcome:
    m = margin(record)
    return "win" if m > (0, 0, 0, 0) else "loss" if m < (0, 0, 0, 0) else "tie"


def explain(record: ItemRecord) -> str:
    """What decided the outcome, e.g. "same grade A; checks: stopped candidate yes, champion no"."""
    grade, gated, other, preference = margin(record)
    candidate, champion = record.candidate, record.champion
    if grade:
        return f"grade {candidate.grade} vs {champion.grade}"
    if gated or other:
        names = _GATED if gated else _OTHER
        pairs = [(name, getattr(candidate.checks, name), getattr(champion.checks, name)) for name in names]
        differing = [f"{name} candidate {yes_no(c)}, champion {yes_no(h)}"
                     for name, c, h in pairs if c is not None and h is not None and c != h]
        return f"same grade {candidate.grade}; checks: " + "; ".join(differing)
    if preference:
        return f"same grade and checks; pairwise judge preferred the {record.preference}"
    return "same grade, checks and preference"


def yes_no(value: bool | None) -> str:
    return "undetermined" if value is None else "yes" if value else "no"


def wins_and_losses(records: list[ItemRecord], limit: int) -> tuple[list[ItemRecord], list[ItemRecord]]:
    """The `limit` clearest wins and losses, largest margin first (file order among equal margins)."""
    wins = sorted((r for r in records if outcome(r) == "win"), key=margin, reverse=True)[:limit]
    losses = sorted((r for r in records if outcome(r) == "loss"), key=margin)[:limit]
    return wins, losses
