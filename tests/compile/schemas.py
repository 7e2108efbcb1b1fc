"""Validators for the upstream Argo v4.1.2 schemas kept in tests/data/argo/ (its README: source, license, quirks).

- CRD schemas (`spec.versions[0].schema.openAPIV3Schema`): what the API server enforces; the authority.
- The JSON schema (draft 2020-12): definitions by name, `$ref`s resolved inside the same document.
- The Argo Server swagger (2.0): request bodies such as WorkflowCreateRequest.
"""

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGO_SCHEMAS = REPO_ROOT / "tests" / "data" / "argo"
CRD_FILES = {"Workflow": "crd-workflows.yaml", "WorkflowTemplate": "crd-workflowtemplates.yaml",
             "CronWorkflow": "crd-cronworkflows.yaml"}
_SWAGGER_ID = "urn:eurolora:argo-server-swagger"


def _errors(validator: Any, instance: Any) -> list[str]:
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:300]}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))]


@functools.cache
def crd_validator(kind: str) -> Any:
    # The CRD files are large (~3 MB each): the C loader keeps loading them fast.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((ARGO_SCHEMAS / CRD_FILES[kind]).read_text(), Loader=loader)
    assert crd["spec"]["names"]["kind"] == kind
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


def crd_errors(obj: dict[str, Any]) -> list[str]:
    return _errors(crd_validator(obj["kind"]), obj)


@functools.cache
def _types_registry() -> tuple[str, Registry]:
    doc = json.loads((ARGO_SCHEMAS / "workflow-types.schema.json").read_text())
    return doc["$id"], Registry().with_resource(doc["$id"], Resource(contents=doc, specification=DRAFT202012))


def types_errors(obj: Any, definition: str) -> list[str]:
    """Errors against `definitions/<definition>` of the Argo JSON schema."""
    schema_id, registry = _types_registry()
    validator = jsonschema.Draft202012Validator({"$ref": f"{schema_id}#/definitions/{definition}"},
                                                registry=registry)
    return _errors(validator, obj)


@functools.cache
def _swagger() -> tuple[dict[str, Any], Registry]:
    doc = json.loads((ARGO_SCHEMAS / "argo-server.swagger.json").read_text())
    return doc, Registry().with_resource(_SWAGGER_ID, Resource(contents=doc, specification=DRAFT4))


def swagger_body_definition(method: str, path_template: str) -> str:
    """The definition name the swagger declares for the body of `method path_template`."""
    doc, _ = _swagger()
    operation = doc["paths"][path_template][method.lower()]
    body = [p for p in operation.get("parameters", []) if p.get("in") == "body"]
    assert body, f"{method} {path_template} takes no body in the swagger"
    return body[0]["schema"]["$ref"].rsplit("/", 1)[-1]


def swagger_errors(body: Any, definition: str) -> list[str]:
    _, registry = _swagger()
    validator = jsonschema.Draft4Validator({"$ref": f"{_SWAGGER_ID}#/definitions/{definition}"},
                                           registry=registry)
    return _errors(validator, body)


def swagger_paths() -> dict[str, Any]:
    return _swagger()[0]["paths"]
