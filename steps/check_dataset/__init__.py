"""check_dataset step: is the new QA dataset different from the one the champion was trained on?

Fine-tuning (and everything after it) runs only when it is, so a nightly run over an unchanged corpus
costs a few CPU minutes instead of a GPU hour.
"""

import logging

from hera.workflows.io import Input, Output

from steps.check_dataset.settings import CheckDatasetSettings
from steps.common.contract import RuntimeContext, transient_exit
from steps.common.registry_settings import RegistrySettings
from steps.common.tags import DATASET_DIGEST_TAG

log = logging.getLogger(__name__)


class CheckDatasetInputs(Input):
    context: RuntimeContext
    settings: CheckDatasetSettings
    registry: RegistrySettings
    dataset_digest: str
    base_model: str


class CheckDatasetOutputs(Output):
    dataset_changed: bool
    champion_version: str
    reason: str
    base_model_digest: str  # lineage for the registered adapter


@transient_exit
def run(inputs: CheckDatasetInputs) -> CheckDatasetOutputs:
    from steps.common.models import model_digest
    from steps.common.registry import CHAMPION, Registry

    champion = Registry(inputs.registry, inputs.context.residency).alias_version(CHAMPION)
    if champion is None:
        changed, reason = True, "no champion yet"
    elif not inputs.settings.skip_unchanged:
        changed, reason = True, "skip_unchanged is off: training regardless of the dataset"
    elif champion.tags.get(DATASET_DIGEST_TAG) == inputs.dataset_digest:
        changed, reason = False, f"dataset identical to champion v{champion.version}'s: training skipped"
    else:
        changed, reason = True, f"dataset differs from champion v{champion.version}'s"
    log.info("check_dataset: changed=%s (%s)", changed, reason)
    return CheckDatasetOutputs(dataset_changed=changed, champion_version=champion.version if champion else "",
                               reason=reason, base_model_digest=model_digest(inputs.base_model, inputs.context))
