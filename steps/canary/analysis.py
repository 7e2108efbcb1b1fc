"""The canary's decisions as pure functions of numbers (no I/O): easy to test with known inputs.

After every analysis interval `judge_interval` compares the challenger with the champion:
- error rate: the challenger's above `max_error_rate`, or above the champion's by `max_error_rate_increase`;
- p95 time to first token (where measured) and end to end: above an absolute ceiling, or slower than the
  champion by more than the ratio AND by at least `min_latency_increase_s`;
- quality (cumulative over the shadow batches judged so far, once `min_items` are in): the challenger's
  C rate above the champion's by `max_c_rate_increase`, or its A rate below by `max_a_rate_drop`;
- the server as a whole (vLLM's own series, every adapter included): its error rate above
  `server_max_error_rate`, its p95 TTFT or end to end above the `server_max_*` ceilings.
Any breach rolls back at once. An interval with fewer than `min_samples` challenger answers (or no
metrics) is not judged; `final_decision` promotes only with enough judged intervals and, when the shadow
set is on, enough judged items: otherwise it rolls back (fail closed).
"""

from typing import Literal

from pydantic import BaseModel, Field

from steps.canary.settings import ShadowSettings, SLOSettings

Status = Literal["ok", "breach", "no_data"]
Decision = Literal["promoted", "rolled_back"]
GRADES = ("A", "B", "C")


class AdapterStats(BaseModel):
    requests: float
    errors: float
    ttft_p95_s: float | None = None
    e2e_p95_s: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None


class QualityTally(BaseModel):
    """Shadow verdicts so far (unusable verdicts already counted fail-closed, see steps/judge/verdicts.py)."""

    challenger: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(GRADES, 0))
    champion: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(GRADES, 0))
    unusable: int = 0  # verdicts that could not be used (counted against the challenger)
    errors: list[str] = Field(default_factory=list)  # shadow batches that failed as a whole

    @property
    def items(self) -> int:
        return sum(self.challenger.values())

    def rate(self, role: Literal["challenger", "champion"], grade: str) -> float | None:
        counts = getattr(self, role)
        total = sum(counts.values())
        return counts.get(grade, 0) / total if total else None

    def add(self, challenger_grade: str, champion_grade: str) -> None:
        self.challenger[challenger_grade] = self.challenger.get(challenger_grade, 0) + 1
        self.champion[champion_grade] = self.champion.get(champion_grade, 0) + 1


class Check(BaseModel):
    name: str
    status: Status
    detail: str


class IntervalJudgement(BaseModel):
    checks: list[Check]
    judged: bool  # enough challenger samples with metrics: counts towards min_judged_intervals
    breaches: list[str]  # details of the breached checks

    @property
    def breached(self) -> bool:
        return bool(self.breaches)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}s"


def check_errors(challenger: AdapterStats, champion: AdapterStats | None, slo: SLOSettings) -> Check:
    rate = challenger.error_rate or 0.0
    base = (champion.error_rate if champion else None) or 0.0
    detail = (f"error rate {_pct(rate)} ({challenger.errors:g}/{challenger.requests:g}) vs champion "
              f"{_pct(base)}; limits {_pct(slo.max_error_rate)} absolute, +{_pct(slo.max_error_rate_increase)}")
    if rate > slo.max_error_rate or rate - base > slo.max_error_rate_increase:
        return Check(name="error_rate", status="breach", detail=detail)
    return Check(name="error_rate", status="ok", detail=detail)


def check_latency(name: str, challenger: float | None, champion: float | None, max_ratio: float,
                  ceiling: float | None, min_increase_s: float) -> Check:
    if challenger is None:
        return Check(name=name, status="no_data", detail=f"{name}: no successful challenger answer in the window")
    detail = f"{name} {_secs(challenger)} vs champion {_secs(champion)}"
    if ceiling is not None and challenger > ceiling:
        return Check(name=name, status="breach", detail=f"{detail}: above the ceiling {_secs(ceiling)}")
    if champion is not None and champion > 0:
        ratio = challenger / champion
        detail += f" (ratio {ratio:.2f}, limit {max_ratio:.2f} when slower by >= {min_increase_s:g}s)"
        if ratio > max_ratio and challenger - champion >= min_increase_s:
            return Check(name=name, status="breach", detail=detail)
    elif champion is None and ceiling is None:
        return Check(name=name, status="no_data", detail=f"{detail}: no champion latency to compare with")
    return Check(name=name, status="ok", detail=detail)


def check_quality(quality: QualityTally, shadow: ShadowSettings) -> Check:
    if shadow.size == 0:
        return Check(name="quality", status="no_data", detail="shadow set disabled (canary.shadow.size=0)")
    n = quality.items
    if n < shadow.min_items:
        return Check(name="quality", status="no_data",
                     detail=f"{n} of {shadow.min_items} shadow items judged so far")
    c_up = (quality.rate("challenger", "C") or 0.0) - (quality.rate("champion", "C") or 0.0)
    a_down = (quality.rate("champion", "A") or 0.0) - (quality.rate("challenger", "A") or 0.0)
    detail = (f"{n} shadow items: C rate {_pct(quality.rate('challenger', 'C'))} vs champion "
              f"{_pct(quality.rate('champion', 'C'))}, A rate {_pct(quality.rate('challenger', 'A'))} vs "
              f"{_pct(quality.rate('champion', 'A'))}; limits +{_pct(shadow.max_c_rate_increase)} C, "
              f"-{_pct(shadow.max_a_rate_drop)} A")
    if c_up > shadow.max_c_rate_increase or a_down > shadow.max_a_rate_drop:
        return Check(name="quality", status="breach", detail=detail)
    return Check(name="quality", status="ok", detail=detail)


def check_server(server: AdapterStats | None, slo: SLOSettings) -> list[Check]:
    """The whole server's health; one no_data check when its series could not be read (or none answered)."""
    if server is None or server.requests <= 0:
        why = "series not read" if server is None else "no finished request in the window"
        return [Check(name="server", status="no_data", detail=f"server (vLLM's base-model series): {why}")]
    rate = server.error_rate or 0.0
    detail = (f"server error rate {_pct(rate)} ({server.errors:g}/{server.requests:g}), limit "
              f"{_pct(slo.server_max_error_rate)}")
    checks = [Check(name="server_error_rate", status="breach" if rate > slo.server_max_error_rate else "ok",
                    detail=detail)]
    for name, value, ceiling in (("server_ttft_p95", server.ttft_p95_s, slo.server_max_ttft_p95_s),
                                 ("server_e2e_p95", server.e2e_p95_s, slo.server_max_e2e_p95_s)):
        detail = f"{name} {_secs(value)}" + (f", ceiling {_secs(ceiling)}" if ceiling is not None else "")
        breached = ceiling is not None and value is not None and value > ceiling
        checks.append(Check(name=name, status="breach" if breached else ("ok" if value is not None else "no_data"),
                            detail=detail))
    return checks


def judge_interval(challenger: AdapterStats | None, champion: AdapterStats | None, quality: QualityTally,
                   slo: SLOSettings, shadow: ShadowSettings, ttft_measured: bool = True,
                   server: AdapterStats | None = None) -> IntervalJudgement:
    """All checks of one interval; `challenger`/`champion` None when their numbers could not be read,
    `server` None when vLLM's whole-server series could not be read (or are not configured).

    `ttft_measured` False: the deployment has no per-adapter TTFT series (`canary.metrics.ttft: null`)."""
    checks: list[Check] = []
    judged = False
    if challenger is None:
        checks.append(Check(name="samples", status="no_data", detail="metrics unavailable for this interval"))
    elif challenger.requests < slo.min_samples:
        checks.append(Check(name="samples", status="no_data",
                            detail=f"{challenger.requests:g} challenger answers < min_samples {slo.min_samples}: "
                                   "interval not judged"))
    else:
        judged = True
        checks.append(Check(name="samples", status="ok",
                            detail=f"{challenger.requests:g} challenger answers, "
                                   f"{champion.requests if champion else 0:g} champion answers"))
        checks.append(check_errors(challenger, champion, slo))
        if ttft_measured:
            checks.append(check_latency("ttft_p95", challenger.ttft_p95_s,
                                        champion.ttft_p95_s if champion else None, slo.max_ttft_p95_ratio,
                                        slo.max_ttft_p95_s, slo.min_latency_increase_s))
        else:
            checks.append(Check(name="ttft_p95", status="no_data",
                                detail="ttft_p95: not measured (canary.metrics.ttft is null: no per-adapter "
                                       "TTFT series on this deployment; e2e_p95 covers latency)"))
        checks.append(check_latency("e2e_p95", challenger.e2e_p95_s, champion.e2e_p95_s if champion else None,
                                    slo.max_e2e_p95_ratio, slo.max_e2e_p95_s, slo.min_latency_increase_s))
    checks.extend(check_server(server, slo))
    checks.append(check_quality(quality, shadow))
    return IntervalJudgement(checks=checks, judged=judged,
                             breaches=[c.detail for c in checks if c.status == "breach"])


def final_decision(judged_intervals: int, intervals: int, quality: QualityTally, slo: SLOSettings,
                   shadow: ShadowSettings) -> tuple[Decision, str]:
    """After all intervals passed without a breach: promote only on enough evidence (fail closed)."""
    if judged_intervals < slo.min_judged_intervals:
        return "rolled_back", (f"insufficient evidence: {judged_intervals} of {intervals} intervals had at least "
                               f"{slo.min_samples} challenger answers (need {slo.min_judged_intervals})")
    quality_check = check_quality(quality, shadow)
    if shadow.size and quality_check.status == "breach":
        return "rolled_back", f"quality SLO breached: {quality_check.detail}"
    if shadow.size and quality_check.status != "ok":
        return "rolled_back", f"quality not established: {quality_check.detail}"
    return "promoted", (f"no SLO breach in {intervals} intervals ({judged_intervals} judged)"
                        + (f"; {quality_check.detail}" if shadow.size else ""))
