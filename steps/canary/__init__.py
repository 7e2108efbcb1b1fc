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
   latency from Prometheus (the series are settings: on a cluster the endpoint picker's per-adapter ones,
   and no TTFT, which no per-adapter series carries there), quality on a sampled shadow set judged as in
   the judge step. Any breach moves all traffic back at once (within one interval of it), without waiting
   for a shadow batch still being judged. Locally (`settings.load.enabled`) a small load generator
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

# Hera (about a second to import) only for the step itself: `python -m steps.canary.adapter_sync` (the vLLM
# pods' sidecar and readiness probe) and `steps.canary.settings` (read by every config load) import this
# package too.
_STEP_NAMES = ("CanaryInputs", "CanaryOutputs", "run")


def __getattr__(name: str) -> object:
    if name in _STEP_NAMES:
        from steps.canary import step

        return getattr(step, name)
    raise AttributeError(f"module 'steps.canary' has no attribute {name!r}")
