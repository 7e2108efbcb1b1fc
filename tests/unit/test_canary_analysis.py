"""The canary's pure decision logic and its numbers, with known inputs (no server, no Prometheus)."""

import math

import pytest

from steps.canary.analysis import AdapterStats, QualityTally, final_decision, judge_interval
from steps.canary.prometheus import counter_delta, quantile_from_buckets, window_seconds
from steps.canary.settings import CanarySettings, ShadowSettings, SLOSettings

SLO = SLOSettings(max_error_rate=0.05, max_error_rate_increase=0.02, max_ttft_p95_ratio=1.5,
                  max_e2e_p95_ratio=1.5, min_latency_increase_s=0.1, min_samples=20, min_judged_intervals=2)
NO_SHADOW = ShadowSettings(size=0)
SHADOW = ShadowSettings(size=20, min_items=10, max_c_rate_increase=0.1, max_a_rate_drop=0.1)
CHAMPION = AdapterStats(requests=200, errors=1, ttft_p95_s=0.20, e2e_p95_s=1.0)


def healthy(**changes: float) -> AdapterStats:
    return AdapterStats(**{"requests": 40, "errors": 0, "ttft_p95_s": 0.21, "e2e_p95_s": 1.05, **changes})


def tally(challenger: dict[str, int], champion: dict[str, int]) -> QualityTally:
    return QualityTally(challenger={"A": 0, "B": 0, "C": 0, **challenger},
                        champion={"A": 0, "B": 0, "C": 0, **champion})


def statuses(judgement) -> dict[str, str]:
    return {c.name: c.status for c in judgement.checks}


def test_a_healthy_challenger_passes_every_check() -> None:
    judgement = judge_interval(healthy(), CHAMPION, QualityTally(), SLO, NO_SHADOW)
    assert judgement.judged and not judgement.breached
    assert statuses(judgement) == {"samples": "ok", "error_rate": "ok", "ttft_p95": "ok", "e2e_p95": "ok",
                                   "server": "no_data", "quality": "no_data"}


def test_the_whole_server_is_judged_from_vllm_s_series() -> None:
    server = AdapterStats(requests=100, errors=1, ttft_p95_s=0.3, e2e_p95_s=1.2)
    judgement = judge_interval(healthy(), CHAMPION, QualityTally(), SLO, NO_SHADOW, server=server)
    assert not judgement.breached
    assert {k: v for k, v in statuses(judgement).items() if k.startswith("server")} == {
        "server_error_rate": "ok", "server_ttft_p95": "ok", "server_e2e_p95": "ok"}
    failing = server.model_copy(update={"errors": 5})  # 5% of all finished requests ended in vLLM errors
    assert "server error rate 5.0% (5/100)" in judge_interval(healthy(), CHAMPION, QualityTally(), SLO, NO_SHADOW,
                                                                server=failing).breaches[0]
    ceilings = SLO.model_copy(update={"server_max_e2e_p95_s": 1.0})
    judgement = judge_interval(healthy(), CHAMPION, QualityTally(), ceilings, NO_SHADOW, server=server)
    assert [c.name for c in judgement.checks if c.status == "breach"] == ["server_e2e_p95"]
    # A server breach counts even in an interval with too few challenger samples to judge the adapters.
    few = judge_interval(healthy(requests=3), CHAMPION, QualityTally(), SLO, NO_SHADOW, server=failing)
    assert few.breached and not few.judged
    idle = judge_interval(healthy(), CHAMPION, QualityTally(), SLO, NO_SHADOW,
                          server=AdapterStats(requests=0, errors=0))
    assert statuses(idle)["server"] == "no_data"


def test_without_a_ttft_series_latency_is_judged_end_to_end_only() -> None:
    slow_first_token = healthy(ttft_p95_s=None)  # what the window holds when canary.metrics.ttft is null
    judgement = judge_interval(slow_first_token, CHAMPION, QualityTally(), SLO, NO_SHADOW, ttft_measured=False)
    assert judgement.judged and not judgement.breached
    ttft = next(c for c in judgement.checks if c.name == "ttft_p95")
    assert ttft.status == "no_data" and "not measured" in ttft.detail
    assert judge_interval(healthy(e2e_p95_s=2.0), CHAMPION, QualityTally(), SLO, NO_SHADOW,
                          ttft_measured=False).breached


@pytest.mark.parametrize(("errors", "breach"), [(2, False), (3, True)])
def test_error_rate_against_the_absolute_limit(errors: int, breach: bool) -> None:
    # 2/40 = 5.0% is at the limit (not above); 3/40 = 7.5% is above it. Champion at 0%: the increase
    # limit (2 points) would fire first, so widen it to isolate the absolute limit.
    slo = SLO.model_copy(update={"max_error_rate_increase": 0.5})
    champion = CHAMPION.model_copy(update={"errors": 0})
    judgement = judge_interval(healthy(errors=errors), champion, QualityTally(), slo, NO_SHADOW)
    assert judgement.breached is breach
    if breach:
        assert "error rate 7.5% (3/40)" in judgement.breaches[0]


def test_error_rate_increase_over_the_champion_breaches() -> None:
    champion = AdapterStats(requests=100, errors=1, ttft_p95_s=0.2, e2e_p95_s=1.0)  # 1%
    ok = judge_interval(healthy(requests=100, errors=3), champion, QualityTally(), SLO, NO_SHADOW)  # +2 points
    bad = judge_interval(healthy(requests=100, errors=4), champion, QualityTally(), SLO, NO_SHADOW)  # +3 points
    assert not ok.breached and bad.breached and statuses(bad)["error_rate"] == "breach"


def test_latency_ratio_needs_a_real_increase_too() -> None:
    # 2x slower but only by 0.05 s: noise, not a breach.
    tiny = judge_interval(healthy(ttft_p95_s=0.1), CHAMPION.model_copy(update={"ttft_p95_s": 0.05}),
                          QualityTally(), SLO, NO_SHADOW)
    assert statuses(tiny)["ttft_p95"] == "ok"
    # 1.6x and 0.6 s slower end to end: a breach.
    slow = judge_interval(healthy(e2e_p95_s=1.6), CHAMPION, QualityTally(), SLO, NO_SHADOW)
    assert statuses(slow)["e2e_p95"] == "breach" and "ratio 1.60" in slow.breaches[0]


def test_absolute_latency_ceiling() -> None:
    slo = SLO.model_copy(update={"max_e2e_p95_s": 1.02})
    judgement = judge_interval(healthy(), CHAMPION, QualityTally(), slo, NO_SHADOW)
    assert statuses(judgement)["e2e_p95"] == "breach" and "ceiling" in judgement.breaches[0]


def test_too_few_samples_or_no_metrics_is_not_judged() -> None:
    few = judge_interval(healthy(requests=19, errors=19), CHAMPION, QualityTally(), SLO, NO_SHADOW)
    assert not few.judged and not few.breached  # 100% errors on 19 requests: below min_samples
    gone = judge_interval(None, None, QualityTally(), SLO, NO_SHADOW)
    assert not gone.judged and statuses(gone)["samples"] == "no_data"


def test_no_successful_answer_leaves_latency_without_data() -> None:
    judgement = judge_interval(healthy(errors=40, ttft_p95_s=None, e2e_p95_s=None), CHAMPION, QualityTally(),
                               SLO, NO_SHADOW)
    assert statuses(judgement)["e2e_p95"] == "no_data" and statuses(judgement)["error_rate"] == "breach"


def test_quality_waits_for_min_items_then_compares_rates() -> None:
    early = judge_interval(healthy(), CHAMPION, tally({"C": 5}, {"A": 5}), SLO, SHADOW)
    assert statuses(early)["quality"] == "no_data" and not early.breached  # 5 < 10 items
    # C rate 30% vs 10%: +20 points > 10.
    worse = judge_interval(healthy(), CHAMPION, tally({"A": 7, "C": 3}, {"A": 9, "C": 1}), SLO, SHADOW)
    assert statuses(worse)["quality"] == "breach"
    # A rate 80% vs 90%, C 10% vs 10%: within both limits.
    fine = judge_interval(healthy(), CHAMPION, tally({"A": 8, "B": 1, "C": 1}, {"A": 9, "C": 1}), SLO, SHADOW)
    assert statuses(fine)["quality"] == "ok"


def test_final_decision_is_fail_closed() -> None:
    good = tally({"A": 9, "C": 1}, {"A": 9, "C": 1})
    assert final_decision(2, 3, good, SLO, SHADOW)[0] == "promoted"
    decision, reason = final_decision(1, 3, good, SLO, SHADOW)
    assert decision == "rolled_back" and "insufficient evidence" in reason
    decision, reason = final_decision(3, 3, tally({"A": 4}, {"A": 4}), SLO, SHADOW)
    assert decision == "rolled_back" and "quality not established" in reason
    decision, reason = final_decision(3, 3, tally({"C": 10}, {"A": 10}), SLO, SHADOW)
    assert decision == "rolled_back" and "quality SLO breached" in reason
    assert final_decision(2, 2, QualityTally(), SLO, NO_SHADOW)[0] == "promoted"


def test_unusable_verdicts_count_against_the_challenger_only() -> None:
    from steps.common.grading import Verdict

    unusable = Verdict(grade=None, error="judge output cut off at the token limit")
    quality = QualityTally()
    quality.add(unusable.counted_as("candidate"), unusable.counted_as("champion"))
    assert quality.challenger["C"] == 1 and quality.champion["A"] == 1


def test_histogram_quantile_matches_prometheus_interpolation() -> None:
    # 100 observations: 50 <= 0.5, 40 in (0.5, 1], 10 in (1, 2.5]. p95 rank 95 falls in (1, 2.5]:
    # 1 + 1.5 * (95 - 90) / 10 = 1.75. p50 rank 50 -> exactly the 0.5 bucket's upper bound.
    buckets = {0.5: 50, 1.0: 90, 2.5: 100, math.inf: 100}
    assert quantile_from_buckets(0.95, buckets) == pytest.approx(1.75)
    assert quantile_from_buckets(0.5, buckets) == pytest.approx(0.5)
    assert quantile_from_buckets(0.99, {0.5: 1, math.inf: 2}) == 0.5  # rank in +Inf: the last finite bound
    assert quantile_from_buckets(0.95, {0.5: 0, math.inf: 0}) is None  # no observation
    assert quantile_from_buckets(0.95, {0.5: 3}) is None  # no +Inf bucket


def test_counter_delta_and_window() -> None:
    assert counter_delta(None, 5) == 5  # series born inside the window counts from zero
    assert counter_delta(10, 15) == 5
    assert counter_delta(10, 3) == 3  # reset (replica restart): counts from zero again
    assert counter_delta(None, None) == 0
    assert window_seconds(100.0, 104.2) == 5 and window_seconds(1.0, 1.0) == 1


def test_fraction_weights() -> None:
    assert CanarySettings(traffic_fraction=0.1).fraction_weights() == (9, 1)
    assert CanarySettings(traffic_fraction=0.5).fraction_weights() == (1, 1)
    assert CanarySettings(traffic_fraction=0.05).fraction_weights() == (19, 1)
    assert CanarySettings(traffic_fraction=0.333).fraction_weights() == (667, 333)


def test_settings_refuse_inconsistent_values() -> None:
    with pytest.raises(ValueError, match="replica_adapter_dir"):
        CanarySettings(routing="inference_model_rewrite")
    with pytest.raises(ValueError, match="min_items"):
        CanarySettings(shadow={"size": 3, "min_items": 5})
    with pytest.raises(ValueError, match="twice"):
        CanarySettings(replicas=["http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/"])
    with pytest.raises(ValueError):
        CanarySettings(traffic_fraction=1.0)
    with pytest.raises(ValueError, match="replica_dns"):
        CanarySettings(replicas=[])
    assert CanarySettings(replicas=[], replica_dns="vllm-replicas.inference.svc.cluster.local:8000").replica_dns


def test_default_series_are_ones_the_real_stack_emits() -> None:
    """Per adapter only the gateway's series (no per-adapter TTFT exists); vLLM's series only for the
    whole server, under the label vLLM really sets (`model_name`, the base model's served name)."""
    metrics = CanarySettings().metrics
    assert metrics.ttft is None
    per_adapter = [metrics.requests, metrics.errors, metrics.e2e]
    assert all(s.metric.startswith("inference_objective_") and s.model_label == "target_model_name"
               for s in per_adapter)
    assert metrics.server is not None
    server = [metrics.server.requests, metrics.server.errors, metrics.server.ttft, metrics.server.e2e]
    assert [s.metric for s in server if s] == ["vllm:request_success_total", "vllm:request_success_total",
                                               "vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"]
    assert {s.model_label for s in server if s} == {"model_name"}
