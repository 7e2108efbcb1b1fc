"""`eurolora submit/schedule/status/logs` for the shipped pipeline against a recording stand-in of the
Argo Server on 127.0.0.1: Hera's real HTTP requests are captured, every body is validated against the Argo
Server swagger, and each body must carry every field of the compiled object (Hera's models are Argo
v4.0.5's and drop unknown fields silently)."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.argo.client import ArgoClient, ArgoError, normalise_base_url, resolve_token
from pipelines.argo.compiler import compile_pipeline
from pipelines.config import load_config
from pipelines.local.processes import free_port, server_process
from tests.compile.conftest import EXAMPLE_CONFIG, REPO_ROOT, cli_argv
from tests.compile.schemas import swagger_body_definition, swagger_errors, swagger_paths
from tests.compile.test_golden import normalise

TOKEN = "s3cr3t-t0ken-value"
STUB = Path(__file__).parent / "argo_server_stub.py"
LOCAL = ["--set", ('residency.allowed_hosts=[s3.eu-central-1.amazonaws.com, "*.dkr.ecr.eu-central-1.amazonaws.com", '
                  '"*.svc.cluster.local", 127.0.0.1]'),
         "--set", 'residency.plain_http_hosts=["*.svc.cluster.local", 127.0.0.1]']


class Stub:
    def __init__(self, base: str, prefix: str, record: Path) -> None:
        self.base, self.prefix, self.record = base, prefix, record

    def requests(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [r for r in map(json.loads, self.record.read_text().splitlines()) if not r["path"].endswith("/version")]

    def overrides(self, url: str | None = None) -> list[str]:
        return [*LOCAL[1::2], f"argo.server_url={url or self.base}"]

    def cli(self, *args: str, opts: tuple[str, ...] = (), url: str | None = None, env: dict | None = None
            ) -> subprocess.CompletedProcess:
        """`eurolora COMMAND [RUN] CONFIG --set ... [opts]` (argparse wants the positionals together)."""
        argv = cli_argv(*args, str(EXAMPLE_CONFIG), "--set", *self.overrides(url), *opts)
        return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "ARGO_TOKEN": TOKEN, **(env or {})})


def _stub(tmp_path: Path, prefix: str):
    port = free_port()
    record = tmp_path / f"requests{prefix.replace('/', '-')}.jsonl"
    argv = [sys.executable, str(STUB), "--port", str(port), "--prefix", prefix, "--record", str(record),
            "--token", TOKEN]
    health = f"http://127.0.0.1:{port}{prefix}/api/v1/version"
    return server_process(argv, health, tmp_path / "stub.log", timeout_s=30), Stub(
        f"http://127.0.0.1:{port}{prefix}", prefix, record)


@pytest.fixture(params=["/argo", ""], ids=["path-prefix", "root"])
def stub(request, tmp_path):
    process, stub = _stub(tmp_path, request.param)
    with process:
        yield stub


def _swagger_path(path: str, prefix: str) -> str:
    assert path.startswith(prefix + "/api/v1/"), f"request {path} lost the server's path prefix {prefix!r}"
    rel = path[len(prefix):]
    for template in swagger_paths():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), rel):
            return template
    raise AssertionError(f"{rel} is not an Argo Server path")


def _check_bodies(stub: Stub) -> list[dict]:
    requests = stub.requests()
    assert requests
    for req in requests:
        template = _swagger_path(req["path"], stub.prefix)
        assert req["authorization"] == f"Bearer {TOKEN}"
        if req["method"] in ("POST", "PUT"):
            assert req["content_type"] == "application/json"
            definition = swagger_body_definition(req["method"], template)
            assert swagger_errors(req["body"], definition) == [], f"{req['method']} {template}"
    return requests


def _compiled(stub: Stub):
    """The shipped pipeline compiled here from the config the CLI was given."""
    return compile_pipeline(load_config(EXAMPLE_CONFIG, stub.overrides()))


def _same(sent: dict, compiled: dict) -> None:
    """Hera sent every field of the compiled object, unchanged (code versions aside: steps/ may change
    between the CLI's compile and this one in a shared tree)."""
    assert normalise(json.dumps(sent, sort_keys=True, indent=0)) == normalise(json.dumps(compiled, sort_keys=True,
                                                                                         indent=0))


def test_submit_waits_and_shows_progress(stub):
    proc = stub.cli("submit", opts=("--wait", "--poll", "0.05"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"submitted handbook-nightly-x\d{4}", out)
    assert f"{stub.base}/workflows/eurolora/handbook-nightly-x" in out  # UI link keeps the prefix
    assert "Running 1/3  running: finetune (3/40)" in out and "Succeeded 3/3" in out
    assert re.search(r"finetune\s+Succeeded\s+3/40", out) and re.search(r"promote\s+Omitted", out)
    assert TOKEN not in out + proc.stderr
    requests = _check_bodies(stub)
    create = requests[0]
    assert create["method"] == "POST" and create["path"] == f"{stub.prefix}/api/v1/workflows/eurolora"
    workflow = create["body"]["workflow"]
    assert "templates" in workflow["spec"] and "workflowTemplateRef" not in workflow["spec"]
    assert workflow["metadata"]["labels"]["eurolora.io/trigger"] == "manual"
    _same(workflow, _compiled(stub).inline_workflow)
    assert [r["method"] for r in requests[1:]] == ["GET", "GET", "GET"]


def test_submit_from_template_is_idempotent(stub):
    outputs = []
    for _ in range(2):
        proc = stub.cli("submit", opts=("--from-template",))
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    requests = _check_bodies(stub)
    assert [(r["method"], r["path"].rsplit("/api/v1/", 1)[1]) for r in requests] == [
        ("POST", "workflow-templates/eurolora"), ("POST", "workflows/eurolora"),
        ("POST", "workflow-templates/eurolora"), ("POST", "workflows/eurolora")]
    names = [requests[i]["body"]["template"]["metadata"]["name"] for i in (0, 2)]
    assert requests[1]["body"]["workflow"]["spec"]["workflowTemplateRef"] == {"name": names[0]}
    assert f"template {names[0]}: created" in outputs[0]
    assert names[0] == names[1]  # same code, same config: the same versioned template
    assert f"template {names[1]}: already on the server" in outputs[1]
    compiled = _compiled(stub)
    _same(requests[0]["body"]["template"], compiled.template)
    _same(requests[1]["body"]["workflow"], compiled.workflow)


def test_schedule_creates_then_replaces_the_cron_workflow(stub):
    first, second = stub.cli("schedule"), stub.cli("schedule")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "cron workflow handbook-nightly-nightly: created (30 1 * * * Europe/Berlin)" in first.stdout
    assert "cron workflow handbook-nightly-nightly: updated" in second.stdout
    requests = _check_bodies(stub)
    assert [(r["method"], r["path"].rsplit("/api/v1/", 1)[1]) for r in requests] == [
        ("POST", "workflow-templates/eurolora"), ("POST", "cron-workflows/eurolora"),
        ("POST", "workflow-templates/eurolora"), ("POST", "cron-workflows/eurolora"),
        ("GET", "cron-workflows/eurolora/handbook-nightly-nightly"),
        ("PUT", "cron-workflows/eurolora/handbook-nightly-nightly")]
    compiled = _compiled(stub)
    _same(requests[1]["body"]["cronWorkflow"], compiled.cron)
    replaced = requests[5]["body"]["cronWorkflow"]
    assert replaced["metadata"].pop("resourceVersion") == "1"  # the version read, so the replace is safe
    _same(replaced, compiled.cron)


def test_status_and_logs(stub):
    submitted = stub.cli("submit")
    assert submitted.returncode == 0, submitted.stderr
    name = stub.requests()[0]["body"]["workflow"]["metadata"]["generateName"] + "x0001"
    status = stub.cli("status", name)
    assert status.returncode == 0, status.stderr
    assert f"workflow  {name}  Running" in status.stdout and "ingest" in status.stdout
    logs = stub.cli("logs", name, opts=("--step", "finetune"))
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == [f"[{name}-finetune-1] finetune line 0", f"[{name}-finetune-1] finetune line 1"]
    missing = stub.cli("status", "no-such-run")
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr and "not found" in missing.stderr
    _check_bodies(stub)


def test_wrong_token_is_a_clear_error(stub):
    proc = stub.cli("submit", env={"ARGO_TOKEN": "wrong"})
    assert proc.returncode == 1 and "HTTP 401" in proc.stderr and "wrong" not in proc.stderr


def test_server_outside_the_residency_policy_is_refused(tmp_path):
    stub = Stub("http://127.0.0.1:9", "", tmp_path / "none.jsonl")
    proc = stub.cli("submit", url="https://argo.us-east-1.example.com/argo")
    assert proc.returncode == 2
    assert "argo.server_url" in proc.stderr and "argo.us-east-1.example.com" in proc.stderr
    proc = stub.cli("status", "x", env={"EUROLORA_ARGO_SERVER_URL": "https://argo.example.us"})
    assert proc.returncode == 2 and "$EUROLORA_ARGO_SERVER_URL" in proc.stderr


@pytest.mark.parametrize(("attr", "request_model", "model", "field"), [
    ("inline_workflow", "WorkflowCreateRequest", "Workflow", "workflow"),
    ("workflow", "WorkflowCreateRequest", "Workflow", "workflow"),
    ("template", "WorkflowTemplateCreateRequest", "WorkflowTemplate", "template"),
    ("cron", "CreateCronWorkflowRequest", "CronWorkflow", "cron_workflow"),
])
def test_hera_request_models_keep_every_compiled_field(compiled, attr, request_model, model, field):
    """The body exactly as Hera's service serialises it (same call, same options) holds the compiled
    object field for field: nothing the v4.0.5 models do not know is dropped."""
    from hera.workflows import models as m

    obj = getattr(compiled, attr)
    req = getattr(m, request_model)(namespace="eurolora", **{field: getattr(m, model).model_validate(obj)})
    body = json.loads(req.model_dump_json(exclude_none=True, by_alias=True, exclude_unset=True,
                                          exclude_defaults=True))
    sent = body[next(k for k in body if k != "namespace")]
    assert sent == obj


def test_nothing_dropped_check_can_fail(fake_compiled):
    """A v4.1 field the v4.0.5 models lack is dropped by Hera: the comparison above would see it."""
    from hera.workflows import models as m

    obj = json.loads(json.dumps(fake_compiled.workflow))
    obj["spec"]["notAnArgoV405Field"] = True
    assert "notAnArgoV405Field" not in json.loads(m.Workflow.model_validate(obj).model_dump_json(by_alias=True))["spec"]


def test_swagger_validation_rejects_a_bad_body():
    errors = swagger_errors({"workflow": {"spec": {"templates": "not a list"}}},
                            "io.argoproj.workflow.v1alpha1.WorkflowCreateRequest")
    assert any("templates" in e for e in errors)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://h/argo", "https://h/argo/api/v1/workflows/ns"),
    ("https://h/argo/", "https://h/argo/api/v1/workflows/ns"),
    ("https://h", "https://h/api/v1/workflows/ns"),
])
def test_base_url_keeps_its_path_prefix(url, expected):
    assert ArgoClient(url, "ns").url("api/v1/workflows/ns") == expected
    assert normalise_base_url(url).endswith("/")


def test_wait_gives_up_after_its_timeout(stub):
    assert stub.cli("submit").returncode == 0
    name = stub.requests()[0]["body"]["workflow"]["metadata"]["generateName"] + "x0001"
    now = [0.0]
    with ArgoClient(stub.base, "eurolora", token=TOKEN) as client, \
            pytest.raises(ArgoError, match="still running after 6s"):
        client.wait(name, timeout_s=6, poll_s=4, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert now[0] == 4.0  # polled at 0 s and 4 s; the stub answers Succeeded only on the third poll


def test_every_request_is_bounded_by_the_timeout():
    """Hera sets no timeout: a server that accepts and never answers must not hang the CLI."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = ArgoClient(f"http://127.0.0.1:{silent.getsockname()[1]}/argo", "ns", timeout_s=1.0)
        started = time.monotonic()
        with pytest.raises(ArgoError, match=r"GET http://127\.0\.0\.1:\d+/argo/api/v1/workflows/ns/wf: timed out"):
            client.get_workflow("wf")
        with pytest.raises(ArgoError, match="timed out|Timeout"):
            list(client.logs("wf"))
    assert time.monotonic() - started < 10


def test_unreachable_server_is_a_clear_error():
    client = ArgoClient(f"http://127.0.0.1:{free_port()}/argo", "ns", timeout_s=2.0)
    with pytest.raises(ArgoError, match=r"GET http://127\.0\.0\.1:\d+/argo/api/v1/workflows/ns/wf"):
        client.get_workflow("wf")


def test_token_from_environment_file_or_config(tmp_path, monkeypatch):
    from pydantic import SecretStr

    monkeypatch.delenv("ARGO_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert resolve_token("ARGO_TOKEN", None, SecretStr("from-config")) == "from-config"
    assert resolve_token("ARGO_TOKEN", token_file, None) == "from-file"
    monkeypatch.setenv("ARGO_TOKEN", "from-env")
    assert resolve_token("ARGO_TOKEN", token_file, None) == "from-env"
    monkeypatch.delenv("ARGO_TOKEN")
    with pytest.raises(ArgoError, match="argo.token_file=.*cannot read it"):
        resolve_token("ARGO_TOKEN", tmp_path / "missing", None)


def test_token_from_config_file_is_sent_and_never_shown(stub, tmp_path):
    token_file = tmp_path / "argo-token"
    token_file.write_text(TOKEN)
    proc = stub.cli("submit", opts=("--set", f"argo.token_file={token_file}"), env={"ARGO_TOKEN": ""})
    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert _check_bodies(stub)  # every request carried the token from the file
    for text in (json.dumps(r["body"]) for r in stub.requests()):
        assert TOKEN not in text
