"""check_dataset step: is there anything new to train on, a QA dataset or a base model the champion was not
trained on?

Fine-tuning (and everything after it) runs only when there is, so a nightly run over an unchanged corpus
and base model costs a few CPU minutes instead of a GPU hour. A champion without a recorded base-model
digest is retrained: nothing proves its base model is the same.
"""

import logging

from hera.workflows.io import Input, Output

from steps.check_dataset.settings import CheckDatasetSettings
from steps.common.contract import RuntimeContext, transient_exit
from steps.common.registry_settings import RegistrySettings
from steps.common.tags import BASE_MODEL_DIGEST_TAG, DATASET_DIGEST_TAG

log = logging.getLogger(__name__)


class CheckDatasetInputs(Input):
    context: RuntimeContext
    settings: CheckDatasetSettings
    registry: RegistrySettings
    dataset_digest: str
    base_model: str


class CheckDatasetOutputs(Output):
    dataset_changed: bool  # True: train (the dataset or the base model differs from the champion's)
    champion_version: str
    reason: str
    base_model_digest: str  # lineage for the registered adapter


@transient_exit
def run(inputs: CheckDatasetInputs) -> CheckDatasetOutputs:
    from steps.common.models import model_digest
    from steps.common.registry import CHAMPION, Registry

    champion = Registry(inputs.registry, inputs.context.residency).alias_version(CHAMPION)
    base_digest = model_digest(inputs.base_model, inputs.context)
    if champion is None:
        changed, reason = True, "no champion yet"
    elif not inputs.settings.skip_unchanged:
        changed, reason = True, "skip_unchanged is off: training regardless of the dataset"
    elif champion.tags.get(DATASET_DIGEST_TAG) != inputs.dataset_digest:
        changed, reason = True, f"dataset differs from champion v{champion.version}'s"
    elif champion.tags.get(BASE_MODEL_DIGEST_TAG) != base_digest:
        changed, reason = True, (f"dataset identical to champion v{champion.version}'s, but the base model "
                                 f"{inputs.base_model} differs from the one it was trained on")
    else:
        changed, reason = False, (f"dataset and base model identical to champion v{champion.version}'s: "
                                  "training skipped")
    log.info("check_dataset: changed=%s (%s)", changed, reason)
    return CheckDatasetOutputs(dataset_changed=changed, champion_version=champion.version if champion else "",
                               reason=reason, base_model_digest=base_digest)
