"""The serving alerts (manifests/serving/80-prometheus-rules.yaml) under Prometheus's own rule engine:
`promtool check rules` on the PrometheusRule's groups, and `promtool test rules` with synthetic series of
the names and labels real vLLM emits (see the manifest), each alert once firing and once not."""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

SERVING = Path(__file__).resolve().parents[2] / "manifests" / "serving"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
NS = 'namespace="inference"'
BUCKETS = ("0.1", "0.5", "1.0", "2.5", "5.0", "+Inf")


def _rule() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all((SERVING / "80-prometheus-rules.yaml").read_text())
              if d["kind"] == "PrometheusRule"]
    return doc


def _rules() -> dict[str, dict[str, Any]]:
    return {r.get("alert") or r["record"]: r for g in _rule()["spec"]["groups"] for r in g["rules"]}


def _annotations(alert: str, labels: dict[str, str]) -> dict[str, str]:
    """The alert's annotations with its labels filled in, as Prometheus renders them."""
    return {k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], v)
            for k, v in _rules()[alert]["annotations"].items()}


def _alert(alert: str, **labels: str) -> dict[str, Any]:
    full = {**labels, "severity": _rules()[alert]["labels"]["severity"]}
    return {"exp_labels": full, "exp_annotations": _annotations(alert, full)}


def _ttft(model: str, per_minute: dict[str, str]) -> list[dict[str, str]]:
    """TTFT bucket, count and e2e count series of one model: `per_minute` gives each cumulative bucket's
    promtool expansion (`0+60x40`); the +Inf bucket doubles as the request count."""
    labels = f'{NS}, model_name="{model}", engine="0"'
    series = [{"series": f'vllm:time_to_first_token_seconds_bucket{{{labels}, le="{le}"}}', "values": v}
              for le, v in per_minute.items()]
    total = per_minute["+Inf"]
    return [*series, {"series": f"vllm:time_to_first_token_seconds_count{{{labels}}}", "values": total},
            {"series": f"vllm:e2e_request_latency_seconds_count{{{labels}}}", "values": total}]


def _http(service: str, status: str, values: str) -> dict[str, str]:
    return {"series": f'http_requests_total{{{NS}, service="{service}", handler="/v1/chat/completions", '
                      f'method="POST", status="{status}"}}', "values": values}


def _unit_tests() -> list[dict[str, Any]]:
    fast = dict(zip(BUCKETS, ("0+30x40", "0+57x40", "0+57x40", "0+60x40", "0+60x40", "0+60x40"), strict=True))
    slow = dict(zip(BUCKETS, ("0x40", "0x40", "0x40", "0x40", "0+60x40", "0+60x40"), strict=True))
    # 0.2 request/s, fast, for 20 minutes; then a burst of 5/s, all slow (queued).
    burst = dict(zip(BUCKETS, ("0+12x20 240+0x10", "0+12x20 240+0x10", "0+12x20 240+0x10", "0+12x20 240+0x10",
                               "0+12x20 240+300x10", "0+12x20 240+300x10"), strict=True))
    ttft = "VLLMTimeToFirstTokenHigh"
    errors = "VLLMServerErrorRateHigh"
    adapters = "VLLMChampionAdapterNotLoaded"
    pod = {"namespace": "inference", "container": "vllm"}
    return [
        {   # percentiles of 60 requests a minute: 30 below 0.1 s, 27 in (0.1, 0.5], 3 in (1, 2.5]
            "interval": "1m", "input_series": _ttft("base", fast),
            "promql_expr_test": [  # in whole milliseconds: promtool compares floats exactly
                {"expr": f"round(1000 * model_name:vllm_time_to_first_token_seconds:p{q}_5m)", "eval_time": "10m",
                 "exp_samples": [{"labels": f'{{{NS}, model_name="base"}}', "value": value}]}
                for q, value in (("50", 100), ("95", 500), ("99", 2200))
            ] + [{"expr": "model_name:vllm_requests:rate5m", "eval_time": "10m",
                  "exp_samples": [{"labels": f'model_name:vllm_requests:rate5m{{{NS}, model_name="base"}}',
                                   "value": 1}]}],
            "alert_rule_test": [{"alertname": ttft, "eval_time": "30m", "exp_alerts": []}],
        },
        {   # slow at a steady 1 request/s: fires once the p95 was above target for 5 minutes
            "interval": "1m", "input_series": _ttft("qa-writer", slow),
            "alert_rule_test": [
                {"alertname": ttft, "eval_time": "4m", "exp_alerts": []},
                {"alertname": ttft, "eval_time": "15m",
                 "exp_alerts": [_alert(ttft, namespace="inference", model_name="qa-writer")]},
            ],
        },
        {   # slow only in a burst: the queue of a burst is not a slow server
            "interval": "1m", "input_series": _ttft("base", burst),
            "promql_expr_test": [{"expr": "model_name:vllm_time_to_first_token_seconds:p95_5m > 2",
                                  "eval_time": "28m", "exp_samples": [{
                                      "labels": f'model_name:vllm_time_to_first_token_seconds:p95_5m{{{NS}, '
                                                'model_name="base"}', "value": 4.875}]}],
            "alert_rule_test": [{"alertname": ttft, "eval_time": "28m", "exp_alerts": []}],
        },
        {   # 10% of the completions answer 5xx: fires; 4xx (client errors) never count
            "interval": "1m",
            "input_series": [_http("vllm", "2xx", "0+54x30"), _http("vllm", "5xx", "0+6x30"),
                             _http("vllm-teacher", "2xx", "0+59x30"), _http("vllm-teacher", "5xx", "0+1x30"),
                             _http("vllm-teacher", "4xx", "0+30x30")],
            "promql_expr_test": [{"expr": "service:vllm_inference_errors:ratio_rate5m", "eval_time": "10m",
                                  "exp_samples": [
                                      {"labels": f'service:vllm_inference_errors:ratio_rate5m{{{NS}, service="vllm"}}',
                                       "value": 0.1},
                                      {"labels": f'service:vllm_inference_errors:ratio_rate5m{{{NS}, '
                                                 'service="vllm-teacher"}', "value": 1 / 90}]}],
            "alert_rule_test": [
                {"alertname": errors, "eval_time": "3m", "exp_alerts": []},
                {"alertname": errors, "eval_time": "15m",
                 "exp_alerts": [_alert(errors, namespace="inference", service="vllm")]},
            ],
        },
        {   # a pod that answers scrapes but stays unready: fires after 10 minutes; a pod still starting
            # (not scraped yet) and a ready pod do not
            "interval": "1m",
            "input_series": [
                {"series": 'kube_pod_container_status_ready{namespace="inference", pod="vllm-a", container="vllm"}',
                 "values": "0x30"},
                {"series": 'up{namespace="inference", job="vllm", pod="vllm-a"}', "values": "1x30"},
                {"series": 'kube_pod_container_status_ready{namespace="inference", pod="vllm-b", container="vllm"}',
                 "values": "0x30"},
                {"series": 'up{namespace="inference", job="vllm", pod="vllm-b"}', "values": "0x30"},
                {"series": 'kube_pod_container_status_ready{namespace="inference", pod="vllm-c", container="vllm"}',
                 "values": "1x30"},
                {"series": 'up{namespace="inference", job="vllm", pod="vllm-c"}', "values": "1x30"},
            ],
            "alert_rule_test": [
                {"alertname": adapters, "eval_time": "9m", "exp_alerts": []},
                {"alertname": adapters, "eval_time": "15m", "exp_alerts": [_alert(adapters, **pod, pod="vllm-a")]},
            ],
        },
    ]


@pytest.fixture
def rule_files(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _rule()["spec"]["groups"]}, sort_keys=False))
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "30s",
                                     "tests": _unit_tests()}, sort_keys=False))
    return rules, tests


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], check=False, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_the_rules_are_valid_and_record_the_percentiles(rule_files):
    rules, _ = rule_files
    proc = _promtool("check", "rules", str(rules), cwd=rules.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = {r["record"] for r in _rules().values() if "record" in r}
    for series in ("time_to_first_token_seconds", "e2e_request_latency_seconds"):
        for q in ("50", "95", "99"):
            rule = _rules()[f"model_name:vllm_{series}:p{q}_5m"]
            assert rule["expr"].startswith(f"histogram_quantile(0.{q}, ") and f"vllm:{series}_bucket" in rule["expr"]
    assert {"VLLMTimeToFirstTokenHigh", "VLLMServerErrorRateHigh", "VLLMChampionAdapterNotLoaded"} <= set(_rules())
    assert _rules()["VLLMTimeToFirstTokenHigh"]["for"] == "5m" and len(recorded) == 10


def test_each_alert_fires_and_stays_quiet_as_specified(rule_files):
    _, tests = rule_files
    proc = _promtool("test", "rules", tests.name, cwd=tests.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_promtool_fails_an_expectation_the_rules_do_not_meet(rule_files):
    """The harness can fail: a steady slow server expected quiet is a failed promtool test."""
    _, tests = rule_files
    spec = yaml.safe_load(tests.read_text())
    spec["tests"][1]["alert_rule_test"][1]["exp_alerts"] = []
    tests.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = _promtool("test", "rules", tests.name, cwd=tests.parent)
    assert proc.returncode != 0 and "VLLMTimeToFirstTokenHigh" in proc.stdout + proc.stderr


def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, module
    return Path(spec.origin).read_text()


def test_the_rules_read_only_series_the_installed_vllm_defines():
    """Every vLLM series the rules read is defined by the installed vLLM's metrics logger, the HTTP series by
    the instrumentator its API server uses; and that instrumentator skips handlers matching "/load", which is
    why adapter loads are watched through the pod's readiness (kube-state-metrics) instead."""
    exprs = " ".join(r["expr"] for r in _rules().values())
    vllm_series = {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"vllm:[a-z0-9_]+", exprs)}
    assert vllm_series == {"vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"}
    loggers = _source("vllm.v1.metrics.loggers")
    for name in vllm_series:
        assert f'"{name}"' in loggers, name
    assert 'name="http_requests_total"' in _source("prometheus_fastapi_instrumentator.metrics")
    instrumentator = _source("vllm.entrypoints.serve.instrumentator.metrics")
    assert '"/load",' in instrumentator and re.search("/load", "/v1/load_lora_adapter")
