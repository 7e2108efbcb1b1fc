"""The canary's first phases: the adapters loaded and verified, a few smoke requests, then the split.

`prepare` and `smoke` return the reason to roll back (a challenger vLLM refuses or that fails its smoke
requests must not stay champion), or None; `shift` sends `traffic_fraction` to the challenger.
"""

from steps.canary.adapter_set import AdapterSet
from steps.canary.serving import ServingError
from steps.canary.session import Canary

SMOKE_PROMPT = "Say hello in one word."


def prepare(canary: Canary) -> str | None:
    """Challenger (and the baseline champion) loaded and listed by /v1/models on every replica; the reason
    to roll back when a replica refuses the challenger (with vLLM's own words), else None."""
    st = canary.state
    if canary.kube is not None:
        uri = canary.adapter_uri(st.model_version)
        champ_uri = canary.adapter_uri(st.baseline_version) if st.baseline_version else ""

        def add(current: AdapterSet) -> AdapterSet:
            out = current.with_adapter(st.challenger, uri, st.model_version, "challenger")
            if st.baseline_version and st.champion:
                out = out.with_adapter(st.champion, champ_uri, st.baseline_version, "champion")
            return out

        canary.change_adapter_set(add, f"{st.challenger} added as challenger")
    if st.champion and st.baseline_version:
        canary.load_everywhere(st.champion, st.baseline_version)
    try:
        canary.load_everywhere(st.challenger, st.model_version)
    except ServingError as exc:
        canary.event("challenger_refused", str(exc))
        return f"challenger could not be loaded: {exc}"
    canary.event("challenger_ready", f"{st.challenger} listed by /v1/models on {len(canary.replicas)} replica(s)")
    return None


def smoke(canary: Canary) -> str | None:
    """Direct requests to both adapters before any traffic moves; the reason to roll back, or None.

    A champion that fails raises instead: a canary cannot compare with (or roll back to) a baseline
    that does not answer, so nothing moves until it does."""
    st, s = canary.state, canary.s
    for replica in canary.replicas:
        for _ in range(s.smoke_requests):
            status, _, _seconds = replica.chat(st.challenger, SMOKE_PROMPT, s.smoke_max_tokens)
            if status != 200:
                return f"challenger failed its smoke test on {replica.name}: HTTP {status}"
            if st.champion:
                status, _, _seconds = replica.chat(st.champion, SMOKE_PROMPT, s.smoke_max_tokens)
                if status != 200:
                    raise ServingError(f"the baseline {st.champion} failed its smoke request on {replica.name} "
                                       f"(HTTP {status}): fix serving, then re-run the step (no traffic moved)")
    if s.smoke_requests:
        canary.event("smoke_passed", f"{s.smoke_requests} request(s) per replica")
    return None


def canary_weights(canary: Canary) -> dict[str, int]:
    champion_w, challenger_w = canary.s.fraction_weights()
    assert canary.state.champion is not None
    return {canary.state.champion: champion_w, canary.state.challenger: challenger_w}


def shift(canary: Canary) -> None:
    """The split applied (absolutely: safe to repeat after a crash)."""
    assert canary.router is not None
    weights = canary_weights(canary)
    canary.router.set_weights(weights)
    canary.event("traffic_shifted", f"{canary.family}: {weights} ({canary.s.traffic_fraction:.0%} to the "
                                     "challenger)")
