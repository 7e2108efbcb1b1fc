"""The canary step's IO contract and the cases where it must touch nothing (no server needed)."""


import pytest

from steps.canary import CanaryInputs, CanaryOutputs, run
from steps.canary.flow import begin_state
from steps.canary.settings import CanarySettings
from steps.canary.state import CanaryState, load_state, save_state
from steps.common.contract import RuntimeContext
from steps.common.registry import Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.tags import ADAPTER_URI_TAG


@pytest.fixture
def registry(mlflow_sqlite_uri: str, mlflow_model: str) -> Registry:
    reg = Registry(RegistrySettings(tracking_uri=mlflow_sqlite_uri, model_name=mlflow_model, timeout_s=10),
                   ResidencyPolicy())
    for n in (1, 2):
        reg.create_version(f"file:///adapters/{n}", None, {ADAPTER_URI_TAG: f"file:///adapters/{n}"})
    return reg


def _inputs(context: RuntimeContext, registry: Registry, **changes: object) -> CanaryInputs:
    values: dict = {"context": context, "registry": registry.settings, "adapter_family": "handbook",
                    "model_version": "2", "promoted": True,
                    # No server listens here: a test that reached the serving phase would fail loudly.
                    "settings": CanarySettings(replicas=["http://127.0.0.1:9/v1"], shadow={"size": 0})}
    values.update(changes)
    return CanaryInputs(**values)


def test_io_models_are_hera_io_with_the_fields_the_spec_binds() -> None:
    from hera.workflows.io import Input, Output

    assert issubclass(CanaryInputs, Input) and issubclass(CanaryOutputs, Output)
    assert run.__annotations__ == {"inputs": CanaryInputs, "return": CanaryOutputs}
    assert {"context", "settings", "registry", "adapter_family", "model_version", "promoted", "qa_uri",
            "judge_engine"} <= set(CanaryInputs.model_fields)
    assert {"decision", "reason", "report_uri", "champion_version"} <= set(CanaryOutputs.model_fields)
    CanarySettings()  # the defaults validate (the pipeline config builds them)


def test_not_promoted_or_disabled_touches_nothing(context: RuntimeContext, registry: Registry) -> None:
    registry.set_alias("champion", "1")
    out = run(_inputs(context, registry, promoted=False))
    assert (out.decision, out.champion_version, out.report_uri) == ("skipped", "1", "")
    disabled = run(_inputs(context, registry, settings=CanarySettings(enabled=False)))
    assert disabled.decision == "skipped" and "enabled" in disabled.reason
    assert load_state(context) is None and registry.aliases() == {"champion": "1"}


def test_champion_moved_since_promote_is_skipped(context: RuntimeContext, registry: Registry) -> None:
    registry.set_alias("champion", "1")  # e.g. an operator rolled back by hand
    out = run(_inputs(context, registry))
    assert out.decision == "skipped" and "champion is version 1, not 2" in out.reason
    assert registry.aliases() == {"champion": "1"}


def test_begin_state_takes_previous_as_the_baseline(registry: Registry) -> None:
    registry.set_alias("champion", "2")
    state, _ = begin_state(registry, "handbook", "2", base_model_name="base")
    assert state is not None and (state.challenger, state.baseline_version, state.champion) == (
        "handbook-v2", None, "base")  # no previous: the first adapter is compared with the base model
    state, _ = begin_state(registry, "handbook", "2", base_model_name="")
    assert state is not None and state.champion is None  # ... or served without comparison
    registry.set_alias("previous", "1")
    state, _ = begin_state(registry, "handbook", "2", base_model_name="base")
    assert state is not None and (state.baseline_version, state.champion) == ("1", "handbook-v1")


def test_a_finished_canary_returns_its_recorded_outputs(context: RuntimeContext, registry: Registry) -> None:
    state = CanaryState(model_version="2", family="handbook", challenger="handbook-v2", baseline_version="1",
                        champion="handbook-v1", phase="done", decision="rolled_back", reason="SLO breach",
                        champion_version_after="1", report_uri="file:///r")
    save_state(context, state)
    out = run(_inputs(context, registry))
    assert out == CanaryOutputs(decision="rolled_back", reason="SLO breach", report_uri="file:///r",
                                champion_version="1")


def test_shadow_set_needs_qa_uri(context: RuntimeContext, registry: Registry) -> None:
    registry.set_alias("champion", "2")
    with pytest.raises(ValueError, match="qa_uri"):
        run(_inputs(context, registry, settings=CanarySettings(shadow={"size": 5, "min_items": 5})))
