"""The canary's end: serving and the registry brought in line with the decision.

Promoted: 100% to the challenger, the adapter set keeps only it, the baseline adapter unloaded after
`drain_s`; in the registry the `challenger` alias goes (`champion` stays, `previous` keeps the baseline).
Rolled back: 100% to the baseline at once; in the registry `champion` restored to the baseline under the
promotion lock (only if it still is the challenger), the version tagged `eurolora.decision=rejected` with
the reason; the challenger removed from the adapter set and unloaded after `drain_s`.
Every step is absolute or a compare-and-set, so a re-run after a crash converges.
"""

import time

from steps.canary.session import Canary
from steps.common.promotion_lock import LeaseSettings, PromotionLock
from steps.common.registry import CHALLENGER, CHAMPION, PREVIOUS
from steps.common.tags import CANARY_DECISION_TAG, CANARY_REASON_TAG, CANARY_REPORT_TAG, DECISION_TAG, REASON_TAG, clip


def route_to_champion(canary: Canary) -> None:
    """All of the family's traffic back on the champion (absolute: safe to repeat)."""
    st = canary.state
    assert canary.router is not None and st.champion is not None
    canary.router.set_weights({st.champion: 1})
    if st.first("route_final") is None:
        canary.event("route_final", f"{canary.family}: 100% {st.champion} (challenger removed)")
        canary.save()


def drain(canary: Canary) -> None:
    final = canary.state.first("route_final")
    wait = (final.at + canary.s.drain_s - time.time()) if final else canary.s.drain_s
    if wait > 0:
        time.sleep(wait)


def finalize(canary: Canary) -> None:
    st = canary.state
    assert canary.router is not None
    if st.decision == "promoted":
        canary.router.set_weights({st.challenger: 1})
        if st.first("route_final") is None:
            canary.event("route_final", f"{canary.family}: 100% {st.challenger}")
        # The set first: the replicas' sidecars must stop re-loading the loser before it is unloaded
        # (the drain also covers the kubelet's delay in updating the mounted ConfigMap).
        canary.change_adapter_set(lambda cur: cur.promoted(st.challenger), f"{st.challenger} is the champion")
        if st.champion and st.baseline_version:  # an adapter baseline is unloaded; the base model stays
            drain(canary)
            canary.unload_everywhere(st.champion)
        registry_after_promotion(canary)
    else:
        route_to_champion(canary)
        registry_after_rollback(canary)
        canary.change_adapter_set(lambda cur: cur.without(st.challenger), f"{st.challenger} removed")
        drain(canary)
        canary.unload_everywhere(st.challenger)
    champion = canary.registry.alias_version(CHAMPION)
    st.champion_version_after = champion.version if champion else ""
    st.phase = "finalized"
    canary.event("finalized", f"champion is version {st.champion_version_after or 'none'}")
    canary.save()


def _tags(canary: Canary, decision: str) -> dict[str, str]:
    return {CANARY_DECISION_TAG: decision, CANARY_REASON_TAG: clip(canary.state.reason),
            CANARY_REPORT_TAG: canary.report_uri}


def registry_after_promotion(canary: Canary) -> None:
    st, registry = canary.state, canary.registry
    aliases = registry.aliases()
    if aliases.get(CHALLENGER) == st.model_version:
        registry.delete_alias(CHALLENGER)  # the challenger won: it is the champion now
    if aliases.get(CHAMPION) != st.model_version:
        canary.event("registry_note", f"champion is version {aliases.get(CHAMPION)}, not {st.model_version}: "
                                      "another promotion happened during the canary; aliases left alone")
    registry.tag_version(st.model_version, _tags(canary, "promoted"))
    canary.event("registry", f"version {st.model_version} stays champion; previous={aliases.get(PREVIOUS)}")


def registry_after_rollback(canary: Canary) -> None:
    """Under the promotion lock: champion back to the baseline (none when the baseline is the base
    model), only if it still is the challenger."""
    st, registry = canary.state, canary.registry
    lease = LeaseSettings(ttl_s=canary.s.lock_ttl_s, wait_s=canary.s.lock_wait_s)
    promotion = PromotionLock(registry)
    with promotion.lock(lease, purpose="canary-rollback") as held:
        current = registry.alias_version(CHAMPION)
        current_version = current.version if current else None
        if current_version == st.model_version:
            promotion.confirm(held)
            if st.baseline_version is None:
                registry.delete_alias(CHAMPION)
            else:
                registry.set_alias(CHAMPION, st.baseline_version)
                if registry.aliases().get(PREVIOUS) == st.baseline_version:
                    registry.delete_alias(PREVIOUS)  # it would point at the champion itself
            canary.event("registry", f"champion restored: version {st.model_version} -> "
                                     f"{st.baseline_version or 'none (the base model)'}")
        elif current_version == st.baseline_version:
            canary.event("registry", f"champion already restored to version {st.baseline_version or 'none'}")
        else:
            canary.event("registry_note", f"champion is version {current_version}, neither {st.model_version} "
                                          f"nor {st.baseline_version}: left alone (another promotion)")
        if registry.aliases().get(CHALLENGER) == st.model_version:
            registry.delete_alias(CHALLENGER)
    registry.tag_version(st.model_version, {
        DECISION_TAG: "rejected", REASON_TAG: clip(f"canary rolled back: {st.reason}"),
        **_tags(canary, "rolled_back")})
