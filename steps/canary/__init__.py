"""canary: put the freshly promoted adapter in front of real traffic, then keep it or roll it back.

Runs after promote moved `champion` to the new version (`when promoted == true`); `previous` is the
champion it replaced, the baseline. Per the issue:

1. Load the challenger `<family>-v<model_version>` on every ready replica (`/v1/load_lora_adapter`,
   verified in `/v1/models`; the baseline is loaded too if missing). Locally the step passes the adapter's
   local folder (materialised from the version's `eurolora.adapter_uri` tag); on a cluster it adds the
   adapter to the declarative set (ConfigMap) so the replicas' sidecar syncs it from the EU bucket to
   `<replica_adapter_dir>/<name>`, and passes that path. A few smoke requests go to it directly.
   With no previous champion the baseline is the base model (`base_model_name`), as in the judge step.
2. Send `traffic_fraction` of the family's traffic to it: locally a weighted route on every replica
   (`POST /v1/routes`), on a cluster the InferenceModelRewrite of the Gateway API Inference Extension.
3. After every analysis interval compare it with the baseline: error rate and p95 TTFT / end-to-end
   latency from Prometheus, quality on a sampled shadow set judged as in the judge step. Any breach rolls
   back at once (within one interval of it). Locally (`settings.load.enabled`) a small load generator
   produces the traffic that production gets from users.
4. Promote (100% to the challenger, the baseline unloaded after `drain_s`, `challenger` alias removed:
   `champion` stays, `previous` keeps the baseline for a later rollback) or roll back (100% to the
   baseline, `champion` restored to it under the registry's promotion lock and only if it is still the
   challenger, the version tagged `eurolora.decision=rejected` with the reason, challenger unloaded).
5. Publish the report (`publishing(context, "canary", "report")`: JSON, Markdown, HTML).

A state record in the artifact store makes re-runs converge (steps/canary/state.py). Decisions are
logged and kept in the report's timeline. Not promoted by promote, canary disabled, or champion moved
since promote: `decision="skipped"` and nothing is touched.
"""

# NOTE: no `from __future__ import annotations` here: Hera's runner inspects these annotations.
import logging
import os
import shutil
from pathlib import Path

from hera.workflows.io import Input, Output
from pydantic import Field

from steps.canary.settings import CanarySettings
from steps.common.contract import RuntimeContext, transient_exit
from steps.common.engines.base import EngineSettings
from steps.common.registry_settings import RegistrySettings

log = logging.getLogger(__name__)

# Set on Argo pods: a local copy of the HTML report there becomes an output artifact the Argo UI shows.
UI_REPORT_ENV = "EUROLORA_UI_REPORT_PATH"


class CanaryInputs(Input):
    context: RuntimeContext
    settings: CanarySettings = Field(default_factory=CanarySettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    adapter_family: str = Field(..., pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
    model_version: str  # promote's candidate version (now the champion)
    promoted: bool  # promote moved `champion` to it; False -> skipped
    qa_uri: str = ""  # generate_qa's directory with qa_test.jsonl (the shadow set); needed if shadow.size > 0
    # The self-hosted judge for the shadow set (bind it to the judge step's `judge.judge_engine`).
    judge_engine: EngineSettings = Field(default_factory=EngineSettings)


class CanaryOutputs(Output):
    decision: str = ""  # promoted | rolled_back | skipped
    reason: str = ""
    report_uri: str = ""  # directory with canary_report.json, canary_report.md, canary_report.html
    champion_version: str = ""  # the registry champion after the canary ("" = none)


def _copy_for_argo_ui(report_dir: Path) -> None:
    from steps.canary.report import HTML_FILE

    target = os.environ.get(UI_REPORT_ENV)
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report_dir / HTML_FILE, target)


@transient_exit
def run(inputs: CanaryInputs) -> CanaryOutputs:
    from steps.canary import report
    from steps.canary.flow import Canary, begin_state, close_quietly, run_canary
    from steps.canary.state import load_state, save_state
    from steps.common.contract import publishing
    from steps.common.registry import CHAMPION, Registry

    context, settings = inputs.context, inputs.settings
    registry = Registry(inputs.registry, context.residency)

    def skipped(reason: str) -> CanaryOutputs:
        log.info("canary: skipped: %s", reason)
        champion = registry.alias_version(CHAMPION)
        return CanaryOutputs(decision="skipped", reason=reason, champion_version=champion.version if champion else "")

    if not settings.enabled:
        return skipped("canary.enabled is false")
    if not inputs.promoted:
        return skipped(f"promote did not make version {inputs.model_version or '?'} champion")
    if settings.shadow.size and not inputs.qa_uri:
        raise ValueError("canary.shadow.size > 0 needs qa_uri (generate_qa's output with qa_test.jsonl); "
                         "bind it or set canary.shadow.size: 0")

    state = load_state(context)
    if state is not None and state.model_version != inputs.model_version:
        log.warning("canary: ignoring the state record of version %s (this run canaries %s)",
                    state.model_version, inputs.model_version)
        state = None
    if state is not None and state.phase == "done":
        log.info("canary: already done for version %s: %s", state.model_version, state.decision)
        return CanaryOutputs(decision=state.decision or "", reason=state.reason, report_uri=state.report_uri,
                             champion_version=state.champion_version_after)
    if state is None:
        state, why = begin_state(registry, inputs.adapter_family, inputs.model_version, settings.base_model_name)
        if state is None:
            return skipped(why)
        state.log("started", f"challenger {state.challenger}, baseline {state.champion or 'none'}")
    else:
        state.attempts += 1
        state.log("resumed", f"attempt {state.attempts} from phase {state.phase}")
    save_state(context, state)

    canary = Canary(context=context, settings=settings, registry=registry, family=inputs.adapter_family,
                    state=state, qa_uri=inputs.qa_uri, judge_engine=inputs.judge_engine)
    try:
        canary.open()
        run_canary(canary)
        routing = canary.router.describe() if canary.router else {}
    finally:
        close_quietly(canary)

    with publishing(context, "canary", "report") as (out_dir, report_uri):
        state.report_uri = report_uri
        state.log("report", report_uri)
        report.write(out_dir, state, settings, routing)
    _copy_for_argo_ui(Path(context.store().materialize(report_uri, context.scratch() / "canary" / "report")))
    state.phase = "done"
    save_state(context, state)
    log.info("canary: %s: %s (champion is version %s)", state.decision, state.reason,
             state.champion_version_after or "none")
    return CanaryOutputs(decision=state.decision or "", reason=state.reason, report_uri=state.report_uri,
                         champion_version=state.champion_version_after)
