"""How long each kind of data is kept, and which kind an artifact is.

A run's artifacts live at `<artifact_root>/runs/<run id>/<step>/<name>`: the step says what they hold (the QA
splits carry chunk text, the judge's report quotes answers). Storage tags every object it publishes under
`runs/` with its class (`eurolora-retention=<class>`), because S3 lifecycle rules filter by prefix and tag,
and a run id sits between the prefix and the step. What is outside `runs/` (promoted adapters under
`models/`, backups) carries no class and never expires by these rules.
"""

from pydantic import BaseModel, Field

RETENTION_TAG = "eurolora-retention"
RUNS_PREFIX = "runs"
MODELS_PREFIX = "models"  # promoted adapters are copied here, out of reach of the runs' expiry

# A step's artifacts by what they hold; every other step's are plain run artifacts.
_STEP_CLASSES = {"generate_qa": "qa-datasets", "judge": "reports"}


class RetentionSettings(BaseModel):
    """Days to keep each kind of data (S3 lifecycle, Argo's workflow TTL and artifact GC, `eurolora gc`)."""

    model_config = {"extra": "forbid"}
    run_artifacts_days: int = Field(30, ge=0, le=3650)  # chunks, adapters of runs, checkpoints, state
    qa_datasets_days: int = Field(30, ge=0, le=3650)  # QA splits: they carry chunk text
    reports_days: int = Field(30, ge=0, le=3650)  # the judge's items and HTML report: they quote answers
    logs_days: int = Field(30, ge=0, le=3650)  # step logs (local runs dir, Argo's archived logs)
    # Days a multipart upload may stay unfinished before S3 drops its parts.
    incomplete_uploads_days: int = Field(1, ge=1, le=30)

    def days(self, retention_class: str) -> int:
        return {"run-artifacts": self.run_artifacts_days, "qa-datasets": self.qa_datasets_days,
                "reports": self.reports_days, "logs": self.logs_days}[retention_class]


def retention_class(relative_key: str) -> str | None:
    """The class of an artifact from its path under the artifact root; None outside `runs/`."""
    parts = relative_key.strip("/").split("/")
    if len(parts) < 3 or parts[0] != RUNS_PREFIX:
        return None
    return _STEP_CLASSES.get(parts[2], "run-artifacts")


def lifecycle_rules(settings: RetentionSettings, prefix: str, logs_prefix: str | None) -> list[dict]:
    """The bucket's lifecycle rules for eurolora's data under `prefix` (each ID starts with `eurolora-`).

    S3 counts days from an object's creation and accepts no 0: a 0 in the settings expires after 1 day."""
    runs = f"{prefix.strip('/')}/{RUNS_PREFIX}/".lstrip("/")
    rules = []
    for cls in ("run-artifacts", "qa-datasets", "reports"):
        days = max(1, settings.days(cls))
        rules.append({
            "ID": f"eurolora-{cls}", "Status": "Enabled",
            "Filter": {"And": {"Prefix": runs, "Tags": [{"Key": RETENTION_TAG, "Value": cls}]}},
            "Expiration": {"Days": days}, "NoncurrentVersionExpiration": {"NoncurrentDays": days},
        })
    if logs_prefix is not None:
        days = max(1, settings.logs_days)
        rules.append({"ID": "eurolora-logs", "Status": "Enabled", "Filter": {"Prefix": logs_prefix.lstrip("/")},
                      "Expiration": {"Days": days}, "NoncurrentVersionExpiration": {"NoncurrentDays": days}})
    rules.append({
        "ID": "eurolora-housekeeping", "Status": "Enabled", "Filter": {"Prefix": runs},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": settings.incomplete_uploads_days},
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    })
    return rules
