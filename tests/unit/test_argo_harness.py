"""The Argo harness itself (tests/support/argo_harness), on small hand-written workflows: how it decides
`depends` and `when`, fills parameters, runs script pods and the exit handler, and what it refuses."""

import json
from pathlib import Path

import pytest
import yaml

from tests.support.argo_harness.expressions import UnresolvedReference, depends_holds, substitute, when_holds
from tests.support.argo_harness.pod import PodPaths, PodSetupError, run_pod
from tests.support.argo_harness.workflow import WorkflowRun

# A script pod that writes its message (input `say`) to an output file under its /tmp mount, fails when
# asked to, and records the environment variable SEEN (from a Secret) next to it.
_SAY = """
import os, sys
os.makedirs("/tmp/out", exist_ok=True)
open("/tmp/out/said", "w").write("{{inputs.parameters.say}}".upper())
open("/tmp/out/seen", "w").write(os.environ.get("SEEN", "-"))
sys.exit(3 if "{{inputs.parameters.say}}" == "fail" else 0)
"""
WORKFLOW = f"""
spec:
  entrypoint: main
  onExit: bye
  arguments:
    parameters: [{{name: greeting, value: hello}}, {{name: flag, value: "no"}}]
  templates:
  - name: say
    inputs: {{parameters: [{{name: say}}, {{name: unused, default: d}}]}}
    outputs:
      parameters:
      - {{name: said, valueFrom: {{path: /tmp/out/said}}}}
      - {{name: seen, valueFrom: {{path: /tmp/out/seen, default: ""}}}}
    script:
      command: [python]
      source: {json.dumps(_SAY)}
      env:
      - {{name: SEEN, valueFrom: {{secretKeyRef: {{name: s, key: k}}}}}}
      volumeMounts: [{{name: tmp, mountPath: /tmp}}]
  - name: inner
    inputs: {{parameters: [{{name: word}}]}}
    dag:
      tasks:
      - {{name: echo, template: say, arguments: {{parameters: [{{name: say, value: "{{{{inputs.parameters.word}}}}"}}]}}}}
  - name: main
    dag:
      tasks:
      - {{name: first, template: say, arguments: {{parameters: [{{name: say, value: "{{{{workflow.parameters.greeting}}}}"}}]}}}}
      - name: gated
        template: say
        depends: first.Succeeded
        when: "{{{{workflow.parameters.flag}}}} == yes"
        arguments: {{parameters: [{{name: say, value: never}}]}}
      - name: after-gated
        template: say
        depends: gated.Succeeded
        arguments: {{parameters: [{{name: say, value: never}}]}}
      - name: group
        template: inner
        depends: first.Succeeded
        arguments: {{parameters: [{{name: word, value: "{{{{tasks.first.outputs.parameters.said}}}}-{{{{workflow.name}}}}"}}]}}
      - name: broken
        template: say
        depends: group.Succeeded
        arguments: {{parameters: [{{name: say, value: fail}}]}}
  - name: record
    inputs: {{parameters: [{{name: say}}]}}
    script: {{command: [python], source: "open('/tmp/status', 'w').write('''{{{{inputs.parameters.say}}}}''')",
              volumeMounts: [{{name: tmp, mountPath: /tmp}}]}}
  - name: bye
    dag:
      tasks:
      - name: status
        template: record
        arguments: {{parameters: [{{name: say, value: "{{{{workflow.status}}}} {{{{workflow.failures}}}}"}}]}}
"""


def test_the_walk_follows_depends_when_and_sub_dags(tmp_path: Path) -> None:
    run = WorkflowRun(yaml.safe_load(WORKFLOW), tmp_path, "wf-1", arguments={"greeting": "hi"},
                      secrets={("s", "k"): "from-secret"})
    result = run.run()
    phases = {n.path: n.phase for n in result.nodes}
    assert phases == {"main/first": "Succeeded", "main/gated": "Skipped", "main/after-gated": "Omitted",
                      "main/group": "Succeeded", "main/group/echo": "Succeeded", "main/broken": "Failed"}
    assert result.phase == "Failed"
    assert result.node("first").outputs == {"said": "HI", "seen": "from-secret"}  # -p greeting=hi; the Secret
    assert result.node("echo").inputs == {"say": "HI-wf-1", "unused": "d"}  # via the sub-DAG's input; a default
    assert result.node("broken").message == "Error (exit code 3)"
    [status] = result.exit_handler
    written = (status.pod.root / "volumes" / "tmp" / "status").read_text()
    assert written.startswith("Failed [") and json.loads(written.removeprefix("Failed "))[0]["displayName"] == "broken"


def test_unknown_arguments_and_missing_secrets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not parameters"):
        WorkflowRun(yaml.safe_load(WORKFLOW), tmp_path, "wf", arguments={"greting": "typo"})
    with pytest.raises(PodSetupError, match="Secret 's' has no key 'k'"):
        WorkflowRun(yaml.safe_load(WORKFLOW), tmp_path, "wf").run()


def test_an_output_outside_every_mount_is_refused(tmp_path: Path) -> None:
    template = {"name": "t", "script": {"command": ["python"], "source": "pass", "volumeMounts": []},
                "outputs": {"parameters": [{"name": "x", "valueFrom": {"path": "/opt/x"}}]}}
    with pytest.raises(PodSetupError, match="read-only"):
        run_pod(template, {}, tmp_path, {}, {}, 30)


def test_an_output_path_the_pod_is_not_given_is_refused(tmp_path: Path) -> None:
    """Compiled into the pod's code, the path cannot be moved into the pod's folder: the pod would write
    this machine's /tmp (the memo-key pod did, before its template passed --out)."""
    template = {"name": "t", "script": {"command": ["python"], "args": ["-m", "tool"], "source": "pass",
                                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]},
                "outputs": {"parameters": [{"name": "key", "valueFrom": {"path": "/tmp/tool/key"}}]}}
    with pytest.raises(PodSetupError, match="passes this path to the pod nowhere"):
        run_pod(template, {}, tmp_path, {}, {}, 30)
    template["script"]["args"] += ["--out", "/tmp/tool/key"]
    assert run_pod(template, {}, tmp_path, {}, {}, 30).message == "Error (exit code 1)"  # no module `tool`


def test_paths_under_a_mount_are_rewritten_and_nothing_else(tmp_path: Path) -> None:
    paths = PodPaths(tmp_path, [{"name": "scratch", "mountPath": "/scratch"}])
    text = '{"scratch_dir":"/scratch","u":"s3://b/scratch","p":"/scratch/x /scratchy"}'
    local = tmp_path / "volumes" / "scratch"
    assert paths.rewrite(text) == f'{{"scratch_dir":"{local}","u":"s3://b/scratch","p":"{local}/x /scratchy"}}'


@pytest.mark.parametrize(("expression", "expected"), [
    ("a.Succeeded && b.Succeeded", False), ("a.Succeeded || b.Succeeded", True), ("a", True), ("b", True),
    ("!(c.Failed) && a.Succeeded", False), ("c.Failed", True), ("b.Skipped", True), ("d.Omitted", True),
    ("a.Failed && b.Skipped || a.Succeeded", True), ("(a.Failed || a.Succeeded) && !b.Skipped", False)])
def test_depends(expression: str, expected: bool) -> None:
    phases = {"a": "Succeeded", "b": "Skipped", "c": "Failed", "d": "Omitted"}
    assert depends_holds(expression, phases) is expected


def test_when_and_substitution() -> None:
    assert when_holds("true == true") and not when_holds("false == true") and when_holds("'a b' != 'a c'")
    with pytest.raises(ValueError):
        when_holds("a == b && c == d")
    assert substitute("{{ x }}-{{y}}", {"x": "1", "y": "2"}) == "1-2"
    with pytest.raises(UnresolvedReference):
        substitute("{{tasks.typo.outputs.parameters.x}}", {})
