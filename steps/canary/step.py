"""The canary step's typed inputs and outputs and its `run()` (the package docstring says what it does).

Imported only when the step runs or is compiled: `steps.canary` itself stays free of Hera, so the serving
pods' readiness probe (`python -m steps.canary.adapter_sync ready`, every 10 s) starts in a fraction of the
time.
"""

# NOTE: no `from __future__ import annotations` here: Hera's runner inspects these annotations.
import logging
from pathlib import Path

from hera.workflows.io import Input, Output
from pydantic import Field

from steps.canary.settings import CanarySettings
from steps.common.argo_ui import copy_for_argo_ui
from steps.common.contract import RuntimeContext, transient_exit
from steps.common.engines.base import EngineSettings
from steps.common.registry_settings import RegistrySettings

log = logging.getLogger(__name__)

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
    copy_for_argo_ui(Path(context.store().materialize(report_uri, context.scratch() / "canary" / "report"))
                     / report.HTML_FILE)
    state.phase = "done"
    save_state(context, state)
    log.info("canary: %s: %s (champion is version %s)", state.decision, state.reason,
             state.champion_version_after or "none")
    return CanaryOutputs(decision=state.decision or "", reason=state.reason, report_uri=state.report_uri,
                         champion_version=state.champion_version_after)


# The entrypoint is `steps.canary:run` (the package resolves it lazily): Hera names it after `__module__`.
run.__module__ = "steps.canary"
