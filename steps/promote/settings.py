"""Settings of the promote step."""

from pydantic import BaseModel, Field

from steps.common.backup_records import BackupSettings
from steps.common.promotion_lock import LeaseSettings


class PromoteSettings(BaseModel):
    model_config = {"extra": "forbid"}
    # The registry-wide promotion lock (a lease with expiry; see PromotionLock.compare_and_set_champion).
    lock: LeaseSettings = Field(default_factory=LeaseSettings)
    # Gate metrics from eval_metrics.json recorded as version tags (numbers only, flattened); a cap
    # keeps a report with per-item scores from flooding the registry.
    max_metric_tags: int = Field(200, ge=0, le=2000)
    # A locked copy (S3 Object Lock) of every adapter made champion, written and verified BEFORE the
    # champion alias moves. Off by default: the local file:// demo has no Object Lock.
    backup: BackupSettings = Field(default_factory=BackupSettings)
