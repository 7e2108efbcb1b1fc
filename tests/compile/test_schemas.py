"""Every compiled object against the CRD schema the API server enforces (the authority) and against the
Argo JSON schema; and proof that the validators do reject what they should."""

import copy

import pytest
import yaml

from pipelines.argo.cluster import artifact_repository
from tests.compile.schemas import crd_errors, types_errors

OBJECTS = ("template", "workflow", "cron", "inline_workflow")


@pytest.mark.parametrize("attr", OBJECTS)
def test_validates_against_crd(compiled, attr):
    obj = getattr(compiled, attr)
    assert crd_errors(obj) == []


@pytest.mark.parametrize("attr", OBJECTS)
def test_validates_against_json_schema(compiled, attr):
    obj = getattr(compiled, attr)
    assert types_errors(obj, f"io.argoproj.workflow.v1alpha1.{obj['kind']}") == []


def test_artifact_repository_validates(example_config):
    repo = artifact_repository(example_config)
    assert types_errors(repo, "io.argoproj.workflow.v1alpha1.ArtifactRepository") == []
    # what the ConfigMap holds is YAML text of the same object
    assert yaml.safe_load(yaml.safe_dump(repo)) == repo


def test_crd_rejects_v3_cron_schedule(fake_compiled):
    cron = copy.deepcopy(fake_compiled.cron)
    cron["spec"]["schedule"] = cron["spec"].pop("schedules")[0]
    assert any("schedules" in e for e in crd_errors(cron))


def test_crd_rejects_wrong_types(fake_compiled):
    template = copy.deepcopy(fake_compiled.template)
    step = next(t for t in template["spec"]["templates"] if "script" in t)
    step["retryStrategy"]["limit"] = ["3"]
    step["synchronization"] = {"mutexes": {"name": "promote"}}
    step["metrics"] = {"prometheus": [{"name": "bad-name!", "help": "x", "gauge": {"value": "1"}}]}
    errors = crd_errors(template)
    assert any("retryStrategy/limit" in e for e in errors)
    assert any("synchronization/mutexes" in e for e in errors)
    assert any("metrics/prometheus/0/name" in e for e in errors)
    assert any("realtime" in e for e in errors)  # gauges must say whether they are real-time


def test_json_schema_types_int_or_string_as_string(fake_compiled):
    """The README's quirk, pinned: integers for IntOrString fail the JSON schema (not the CRD); the
    compiler writes strings there so both accept the objects."""
    template = copy.deepcopy(fake_compiled.template)
    step = next(t for t in template["spec"]["templates"] if "script" in t)
    step["retryStrategy"]["limit"] = 3
    assert crd_errors(template) == []
    assert any("limit" in e for e in types_errors(template, "io.argoproj.workflow.v1alpha1.WorkflowTemplate"))
