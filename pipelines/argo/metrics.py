"""The Prometheus metrics Argo's controller emits for the pipeline: every step pod's duration, runs and
failures, each numeric or boolean output of a step as a gauge, and the workflow's duration and failures."""

import re

from hera.workflows import models as m

from pipelines.argo.checks import CompileError
from pipelines.argo.stepio import StepIO

MAX_METRICS = 100  # the CRD's maxItems for a template's metrics.prometheus
_METRIC_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")
_NUMERIC = (int, float)


def step_metrics(pipeline_name: str, sio: StepIO) -> m.Metrics:
    labels = [m.MetricLabel(key="pipeline", value=pipeline_name), m.MetricLabel(key="step", value=sio.node.name)]
    metrics = [
        m.Prometheus(name="eurolora_step_duration_seconds", help="Duration of a eurolora step pod (seconds)",
                     labels=labels, gauge=m.Gauge(value="{{duration}}", realtime=False)),
        m.Prometheus(name="eurolora_step_runs_total", help="Finished eurolora step pods, by status",
                     labels=[*labels, m.MetricLabel(key="status", value="{{status}}")],
                     counter=m.Counter(value="1")),
        m.Prometheus(name="eurolora_step_failures_total", help="Failed eurolora step pods",
                     labels=labels, when="{{status}} == Failed", counter=m.Counter(value="1")),
        *output_gauges(pipeline_name, sio),
    ]
    if len(metrics) > MAX_METRICS:
        raise CompileError([(f"step {sio.node.name}: {len(metrics)} Prometheus metrics, Argo allows at most "
                            f"{MAX_METRICS} per template; the step has too many numeric outputs")])
    return m.Metrics(prometheus=metrics)


def output_gauges(pipeline_name: str, sio: StepIO) -> list[m.Prometheus]:
    """Every numeric output (the judge's gate rates, counts, losses) as a gauge of the last run, and
    every boolean (the gate's verdict) as a 0/1 gauge: one definition per value, picked by `when`
    (Argo's gauges take a number, the parameter holds "true"/"false")."""
    labels = [m.MetricLabel(key="pipeline", value=pipeline_name)]
    gauges: list[m.Prometheus] = []
    for fld, name in sio.outputs.items():
        typ = sio.output_types.get(fld)
        if not isinstance(typ, type) or not issubclass(typ, _NUMERIC):
            continue
        metric = _METRIC_NAME_RE.sub("_", f"eurolora_{sio.node.name}_{fld}").lower()
        ref = f"{{{{outputs.parameters.{name}}}}}"
        if issubclass(typ, bool):
            gauges += [m.Prometheus(
                name=metric, help=f"Output {fld} of step {sio.node.name} (last successful run), 1 = true",
                labels=labels, when=f"{{{{status}}}} == Succeeded && {ref} == {text}",
                gauge=m.Gauge(value=value, realtime=False)) for text, value in (("true", "1"), ("false", "0"))]
        else:
            gauges.append(m.Prometheus(
                name=metric, help=f"Output {fld} of step {sio.node.name} (last successful run)",
                labels=labels, when="{{status}} == Succeeded", gauge=m.Gauge(value=ref, realtime=False)))
    return gauges


def workflow_metrics(pipeline_name: str) -> m.Metrics:
    labels = [m.MetricLabel(key="pipeline", value=pipeline_name)]
    return m.Metrics(prometheus=[
        m.Prometheus(name="eurolora_workflow_duration_seconds", help="Duration of a eurolora workflow (seconds)",
                     labels=[*labels, m.MetricLabel(key="status", value="{{workflow.status}}")],
                     gauge=m.Gauge(value="{{workflow.duration}}", realtime=False)),
        m.Prometheus(name="eurolora_workflow_failures_total", help="Failed eurolora workflows",
                     labels=labels, when="{{workflow.status}} == Failed", counter=m.Counter(value="1")),
    ])
