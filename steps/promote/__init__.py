"""promote: register the fine-tuned adapter in MLflow and, if the judge's gate passed, make it champion.

Always: a model version is created from the finetune MLflow run (the adapter folder logged as its
`adapter` artifacts; the version's source points there) with lineage tags (base model and digest,
dataset digest, code version, judge model, the gate's numbers, the pipeline run id, our own
`eurolora.adapter_uri`), and the `challenger` alias is moved to it.

The judge's numbers are logged as metrics of the finetune run (`judge.*`), where MLflow's UI shows them.

If the gate passed: the adapter is first copied to `<artifact root>/models/<model>/v<N>` and the version's
`eurolora.adapter_uri` moved there (the run's prefix expires under the retention policy; what may serve
must not), then a compare-and-set under the registry's promotion lock moves `previous` to the old
champion and `champion` to the new version, but only if the champion is still the one the judge
compared against (`expected_champion_version`); otherwise nothing moves and the decision is
`refused_race`. The decision (`promoted` | `rejected` | `refused_race`) and its reason are recorded as
version tags and returned.

Backups (`settings.backup.enabled`): when the gate passed and the champion is still the one the judge
compared against (or already this version, on a retry), the adapter is copied to the locked backup
(S3 Object Lock, see `steps.common.backup`), verified, and recorded as version tags BEFORE the
compare-and-set moves `champion`; so no champion exists without a verified backup. The backup is written
outside the promotion lock (an upload must not eat the lease's TTL); the compare-and-set itself is
unchanged. If the champion already moved away, no backup is written (locked copies cannot be deleted)
and the compare-and-set refuses as before. If the backup fails, the version is tagged
`eurolora.backup=failed` with the error, the champion is left untouched and the step fails: an S3
outage as TransientError (retried; the retry reuses the version and a recorded backup), anything else
(bucket without Object Lock, region outside the residency policy, a digest mismatch) as BackupError.

A retried step reuses the version it created before (same finetune run, pipeline run and adapter
digest) instead of registering a second one. A registry that cannot be reached raises TransientError.
"""

# NOTE: no `from __future__ import annotations` here: Hera's runner inspects these annotations.
import contextlib
import logging
import re
from typing import Any

from hera.workflows.io import Input, Output
from pydantic import Field

from steps.common import tags as tag
from steps.common.backup import ensure_backup
from steps.common.contract import RuntimeContext, transient_exit
from steps.common.eval_report import METRICS_FILE, EvalMetrics, read_eval_report
from steps.common.promotion_lock import PromotionLock
from steps.common.registry import CHALLENGER, CHAMPION, ModelVersionInfo, Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.retention import MODELS_PREFIX
from steps.common.storage import MANIFEST_NAME, join_uri
from steps.common.tags import clip
from steps.promote.settings import PromoteSettings

log = logging.getLogger(__name__)


class PromoteInputs(Input):
    context: RuntimeContext
    settings: PromoteSettings = Field(default_factory=PromoteSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    adapter_uri: str  # the finetune step's published adapter directory
    mlflow_run_id: str  # the finetune MLflow run: the adapter is logged there as `adapter`
    report_uri: str  # the judge step's published directory holding eval_metrics.json
    gate_passed: bool
    expected_champion_version: str = ""  # the champion the judge compared against; "" = none
    base_model: str = ""
    base_model_digest: str = ""
    corpus_digest: str = ""  # ingest's: the files the QA pairs were written from
    qa_model: str = ""  # generate_qa's: the model that wrote the pairs
    dataset_digest: str = ""
    judge_model: str = ""  # the judge step's: the model that graded
    code_version: str = ""


class PromoteOutputs(Output):
    model_version: str = ""
    promoted: bool = False
    champion_version: str = ""  # the champion after this step ("" = none)
    decision: str = ""  # promoted | rejected | refused_race
    reason: str = ""


def _tag_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", text) or "_"


def flatten_numbers(data: Any, prefix: str = "") -> dict[str, float | int]:
    """Numeric leaves of nested dicts as dotted keys (booleans and strings skipped)."""
    out: dict[str, float | int] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{_tag_part(str(key))}" if prefix else _tag_part(str(key))
            out.update(flatten_numbers(value, name))
    elif isinstance(data, (int, float)) and not isinstance(data, bool) and prefix:
        out[prefix] = data
    return out


def read_report(context: RuntimeContext, report_uri: str) -> EvalMetrics:
    local = context.store().materialize(report_uri, context.scratch() / "promote" / "report")
    return read_eval_report(local, report_uri)


def report_numbers(report: EvalMetrics) -> dict[str, float | int]:
    return flatten_numbers({"gate": report.gate.model_dump(), "candidate": report.candidate.model_dump(),
                            "champion": report.champion.model_dump()})


def keep_out_of_run_prefix(inputs: PromoteInputs, registry: Registry, version: ModelVersionInfo,
                           adapter_dir: Any) -> None:
    """A version that may serve is copied to `<artifact root>/models/<model>/v<N>` (never expired by the
    retention rules, which cover `runs/`) and its adapter tag moved there, before it can become champion."""
    store = inputs.context.store()
    target = join_uri(inputs.context.storage.artifact_root, MODELS_PREFIX, inputs.registry.model_name,
                      f"v{version.version}")
    if version.tags.get(tag.ADAPTER_URI_TAG) == target and store.exists(target):
        return  # a retry: already copied
    published = store.publish_dir(adapter_dir, target)
    if published.digest != store.read_manifest(inputs.adapter_uri).digest:
        raise RuntimeError(f"the copy of {inputs.adapter_uri} at {target} does not match its digest")
    registry.tag_version(version.version, {tag.ADAPTER_URI_TAG: target, tag.RUN_ADAPTER_URI_TAG: inputs.adapter_uri})
    log.info("promote: version %s copied to %s (out of the run's expiring prefix)", version.version, target)


def lineage_tags(inputs: PromoteInputs, report: EvalMetrics, adapter_digest: str) -> dict[str, str]:
    tags = {
        tag.PIPELINE_RUN_ID_TAG: inputs.context.run_id,
        tag.ADAPTER_URI_TAG: inputs.adapter_uri,
        tag.ADAPTER_DIGEST_TAG: adapter_digest,
        tag.REPORT_URI_TAG: inputs.report_uri,
        tag.BASE_MODEL_TAG: inputs.base_model,
        tag.BASE_MODEL_DIGEST_TAG: inputs.base_model_digest,
        tag.CORPUS_DIGEST_TAG: inputs.corpus_digest,
        tag.QA_MODEL_TAG: inputs.qa_model,
        tag.DATASET_DIGEST_TAG: inputs.dataset_digest,
        tag.JUDGE_MODEL_TAG: inputs.judge_model,
        tag.CODE_VERSION_TAG: inputs.code_version,
        tag.EXPECTED_CHAMPION_TAG: inputs.expected_champion_version,
        tag.GATE_PASSED_TAG: str(report.gate.passed).lower(),
        tag.GATE_REASON_TAG: report.gate.reason,
    }
    numbers = report_numbers(report)
    for key in sorted(numbers)[: inputs.settings.max_metric_tags]:
        tags[f"{tag.METRICS_TAG_PREFIX}{key}"] = repr(numbers[key])
    if len(numbers) > inputs.settings.max_metric_tags:
        kept = inputs.settings.max_metric_tags
        tags[f"{tag.METRICS_TAG_PREFIX}truncated"] = f"{len(numbers)} numbers, first {kept} kept"
    return {key: clip(value) for key, value in tags.items()}


def _backup_before_promotion(inputs: PromoteInputs, registry: Registry, version: ModelVersionInfo,
                             expected: str | None, adapter_dir: Any) -> None:
    """Write (or reuse) the locked backup of `version` if it may still become champion."""
    champion = registry.alias_version(CHAMPION)
    current = champion.version if champion else None
    if current not in (expected, version.version):
        log.info("promote: champion moved to %s (judge compared against %s): no backup written, the "
                 "compare-and-set will refuse", current, expected)
        return
    context = inputs.context
    try:
        manifest_bytes = context.store().read_bytes(join_uri(inputs.adapter_uri, MANIFEST_NAME))
        record = ensure_backup(registry, version, settings=inputs.settings.backup, storage=context.storage,
                               residency=context.residency, adapter_uri=inputs.adapter_uri,
                               adapter_dir=adapter_dir, manifest_bytes=manifest_bytes)
    except Exception as exc:
        with contextlib.suppress(Exception):  # the backup's own error matters more than this tag
            failure = clip(f"{type(exc).__name__}: {exc}")
            registry.tag_version(version.version, {tag.BACKUP_TAG: "failed", tag.BACKUP_ERROR_TAG: failure})
        log.error("promote: backup of version %s failed; champion not moved: %s", version.version, exc)
        raise
    log.info("promote: version %s backed up to %s (%s until %s)", version.version, record.uri, record.mode,
             record.retain_until)


@transient_exit
def run(inputs: PromoteInputs) -> PromoteOutputs:
    context = inputs.context
    expected = inputs.expected_champion_version.strip() or None
    report = read_report(context, inputs.report_uri)
    if report.gate.passed != inputs.gate_passed:
        raise ValueError(f"gate_passed={inputs.gate_passed} but {inputs.report_uri}/{METRICS_FILE} says "
                         f"gate.passed={report.gate.passed}: refusing to promote on inconsistent inputs")
    store = context.store()
    adapter_digest = store.read_manifest(inputs.adapter_uri).digest
    adapter_dir = store.materialize(inputs.adapter_uri, context.scratch() / "promote" / "adapter")

    registry = Registry(inputs.registry, context.residency)
    tags = lineage_tags(inputs, report, adapter_digest)
    identity = {tag.PIPELINE_RUN_ID_TAG: context.run_id, tag.ADAPTER_DIGEST_TAG: adapter_digest}
    earlier = registry.find_versions(inputs.mlflow_run_id, identity)
    if earlier:
        version = earlier[-1]
        log.info("promote: reusing version %s registered by an earlier attempt", version.version)
    else:
        source = registry.log_adapter(inputs.mlflow_run_id, adapter_dir)
        version = registry.create_version(source, inputs.mlflow_run_id, tags)
        log.info("promote: registered %s version %s", inputs.registry.model_name, version.version)
    registry.set_alias(CHALLENGER, version.version)
    # The judge's numbers on the run that trained the version, where MLflow's UI shows them (a retry logs
    # the same values again).
    registry.log_metrics(inputs.mlflow_run_id, {f"judge.{k}": v for k, v in report_numbers(report).items()})

    if not report.gate.passed:
        decision, promoted = "rejected", False
        reason = f"gate failed: {report.gate.reason}"
        champion = registry.alias_version(CHAMPION)
        champion_version = champion.version if champion else ""
    else:
        keep_out_of_run_prefix(inputs, registry, version, adapter_dir)
        if inputs.settings.backup.enabled:
            _backup_before_promotion(inputs, registry, version, expected, adapter_dir)
        promotion = PromotionLock(registry)
        result = promotion.compare_and_set_champion(version.version, expected, inputs.settings.lock)
        promoted = result.promoted
        decision = "promoted" if promoted else "refused_race"
        reason = result.reason
        champion_version = result.champion_version or ""
        log.info("promote: %s (waited %.2fs for the promotion lock)", result.outcome, result.lock_wait_s)

    registry.tag_version(version.version, {tag.DECISION_TAG: decision, tag.REASON_TAG: clip(reason)})
    log.info("promote: version %s %s; champion is %s", version.version, decision, champion_version or "none")
    return PromoteOutputs(model_version=version.version, promoted=promoted, champion_version=champion_version,
                          decision=decision, reason=reason)
