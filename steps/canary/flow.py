"""The canary's phases in order (steps/canary/state.py names them): prepare and shift, analyse, decide,
finalize. The step (steps/canary/step.py) publishes the report after them.

`run_canary` is resumable: it reads the state record, skips what is recorded as done and re-applies the
rest idempotently, so a re-run after a crash at any point ends in the same state.
"""

from contextlib import suppress

from steps.canary import analysis
from steps.canary.analyse import analyse
from steps.canary.finalize import finalize
from steps.canary.prepare import prepare, shift, smoke
from steps.canary.serving import ServingError, adapter_name
from steps.canary.session import Canary
from steps.canary.state import CanaryState
from steps.common.registry import CHAMPION, PREVIOUS, Registry


def begin_state(registry: Registry, family: str, model_version: str, base_model_name: str = ""
                ) -> tuple[CanaryState | None, str]:
    """A fresh state from the registry's aliases, or (None, why there is nothing to canary).

    The baseline is the champion before promote (`previous`); without one, the base model served as
    `base_model_name` (None when that is "": the first adapter is then served without comparison)."""
    aliases = registry.aliases()
    champion = aliases.get(CHAMPION)
    if champion != model_version:
        return None, (f"champion is version {champion or 'none'}, not {model_version}: promote did not leave "
                      "this version as champion (or another promotion or rollback happened since); nothing to do")
    previous = aliases.get(PREVIOUS)
    baseline = previous if previous and previous != model_version else None
    state = CanaryState(model_version=model_version, family=family,
                        challenger=adapter_name(family, model_version), baseline_version=baseline,
                        champion=adapter_name(family, baseline) if baseline else (base_model_name or None))
    return state, ""


def run_canary(canary: Canary) -> None:
    """Every phase not yet recorded, in order; the state is saved after each."""
    st = canary.state
    if not st.reached("decided"):
        refused = prepare(canary)
        if refused and st.champion is not None:
            canary.decide("rolled_back", refused)
        elif refused:
            raise ServingError(f"{refused}; there is no previous champion to roll back to")
        elif st.champion is None:
            canary.decide("promoted", "no previous champion to compare with: the first adapter of "
                                      f"{canary.family} is served directly")
        elif st.phase == "started":
            failure = smoke(canary)
            if failure:
                canary.decide("rolled_back", failure)
            else:
                shift(canary)
                st.phase = "shifted"
                canary.save()
        else:
            shift(canary)  # re-applied absolutely after a crash
        if not st.reached("decided"):
            analyse(canary)  # decides by itself on a breach
        if not st.reached("decided"):
            judged = sum(1 for i in st.intervals if i.judged)
            canary.decide(*analysis.final_decision(judged, len(st.intervals), st.quality, canary.s.slo,
                                                   canary.s.shadow))
    if not st.reached("finalized"):
        finalize(canary)


def close_quietly(canary: Canary) -> None:
    with suppress(Exception):
        canary.close()
