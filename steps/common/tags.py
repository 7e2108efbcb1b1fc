"""Every tag eurolora writes on the MLflow registry, in one place: lineage, decisions, backups, the lock.

Version tags are the registry's record of where an adapter came from and what happened to it: promote
writes the lineage and decision, the canary its decision (and a rollback's), promote and `eurolora
restore` the backup tags, the promotion lock its lease on the lock model. Readers (judge, canary, backup,
check_dataset) look them up through these constants, never through literals.
"""

PREFIX = "eurolora."
MAX_VALUE_CHARS = 4000  # MLflow's limit on a tag value is 5000; leave room for the ellipsis and encodings

# Lineage (promote)
STEP_TAG = "eurolora.step"  # on MLflow runs: which step logged them
PIPELINE_RUN_ID_TAG = "eurolora.pipeline_run_id"
ADAPTER_URI_TAG = "eurolora.adapter_uri"  # our published adapter dir; judge and canary read it from here
# Where finetune published it, inside the run's prefix (expires with the run); a version that passed the gate
# gets a copy under `<artifact root>/models/` and ADAPTER_URI_TAG moves there.
RUN_ADAPTER_URI_TAG = "eurolora.run_adapter_uri"
ADAPTER_DIGEST_TAG = "eurolora.adapter_digest"
REPORT_URI_TAG = "eurolora.report_uri"
BASE_MODEL_TAG = "eurolora.base_model"
BASE_MODEL_DIGEST_TAG = "eurolora.base_model_digest"
CORPUS_DIGEST_TAG = "eurolora.corpus_digest"  # ingest's chunks artifact
QA_MODEL_TAG = "eurolora.qa_model"  # the model that wrote the QA pairs
DATASET_DIGEST_TAG = "eurolora.dataset_digest"
JUDGE_MODEL_TAG = "eurolora.judge_model"  # the model the judge step actually graded with
CODE_VERSION_TAG = "eurolora.code_version"
EXPECTED_CHAMPION_TAG = "eurolora.expected_champion_version"
GATE_PASSED_TAG = "eurolora.gate.passed"
GATE_REASON_TAG = "eurolora.gate.reason"
METRICS_TAG_PREFIX = "eurolora.metrics."
MODE_TAG = "eurolora.mode"  # on the finetune run: how it trained

# Decisions (promote, canary, restore)
DECISION_TAG = "eurolora.decision"  # promoted | rejected | refused_race | restored
REASON_TAG = "eurolora.reason"
CANARY_DECISION_TAG = "eurolora.canary.decision"
CANARY_REASON_TAG = "eurolora.canary.reason"
CANARY_REPORT_TAG = "eurolora.canary.report_uri"

# Backups (steps/common/backup.py, restore)
BACKUP_TAG = "eurolora.backup"  # "ok" | "failed"
BACKUP_URI_TAG = "eurolora.backup_uri"  # s3://bucket/prefix/<model>/v<version>
BACKUP_INDEX_VERSION_TAG = "eurolora.backup.index_version_id"  # S3 VersionId of BACKUP.json
BACKUP_DIGEST_TAG = "eurolora.backup.digest"  # Manifest.digest of the backed-up adapter
BACKUP_MODE_TAG = "eurolora.backup.mode"
BACKUP_RETAIN_UNTIL_TAG = "eurolora.backup.retain_until"
BACKUP_ERROR_TAG = "eurolora.backup.error"
RESTORED_FROM_TAG = "eurolora.restored_from"  # on a version re-registered by `eurolora restore`: v<N>
RESTORED_TO_TAG = "eurolora.restored_to"  # on the version that was restored: v<M>

# The promotion lock's lease (on the lock's registered model)
LOCK_OWNER_TAG = "eurolora.lock.owner"
LOCK_EXPIRES_TAG = "eurolora.lock.expires_at"  # unix seconds, written by the holder's clock
LOCK_PURPOSE_TAG = "eurolora.lock.purpose"


def clip(text: str) -> str:
    """A tag value cut to the registry's limit."""
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."
