"""`eurolora submit/status/logs` against a recording stand-in of the Argo Server on 127.0.0.1: the real
HTTP requests are captured and every body is validated against the Argo Server swagger."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pipelines.argo.client import ArgoClient, ArgoError, normalise_base_url
from pipelines.local.processes import free_port, server_process
from tests.compile.conftest import EXAMPLE_CONFIG, REPO_ROOT, cli_argv
from tests.compile.schemas import swagger_body_definition, swagger_errors, swagger_paths

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

    def cli(self, *args: str, opts: tuple[str, ...] = (), url: str | None = None, env: dict | None = None,
            fake: bool = True) -> subprocess.CompletedProcess:
        """`eurolora COMMAND [RUN] CONFIG --set ... [opts]` (argparse wants the positionals together)."""
        argv = cli_argv(*args, str(EXAMPLE_CONFIG), *LOCAL, "--set", f"argo.server_url={url or self.base}",
                        *opts, fake=fake)
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
        if req["method"] == "POST":
            assert req["content_type"] == "application/json"
            definition = swagger_body_definition(req["method"], template)
            assert swagger_errors(req["body"], definition) == [], f"{req['method']} {template}"
    return requests


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
    if names[0] != names[1]:  # only when someone edited steps/ between the two submits (shared tree)
        pytest.skip(f"the pipeline code changed between the submits: {names}")
    assert f"template {names[1]}: already on the server" in outputs[1]


def test_status_and_logs(stub):
    assert stub.cli("submit").returncode == 0
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


@pytest.mark.parametrize("attr", ["inline_workflow", "workflow"])
def test_request_bodies_of_the_compiled_pipeline_match_the_swagger(compiled, attr):
    body = {"namespace": "eurolora", "workflow": getattr(compiled, attr)}
    assert swagger_errors(body, swagger_body_definition("POST", "/api/v1/workflows/{namespace}")) == []
    body = {"namespace": "eurolora", "template": compiled.template}
    assert swagger_errors(body, swagger_body_definition("POST", "/api/v1/workflow-templates/{namespace}")) == []


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


def test_wait_gives_up_after_its_timeout():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.extensions["timeout"]["read"] == 3.0  # every call is bounded
        return httpx.Response(200, json={"metadata": {"name": "wf"}, "status": {"phase": "Running"}})

    now = [0.0]
    client = ArgoClient("http://argo.local", "ns", timeout_s=3.0, transport=httpx.MockTransport(handler))
    with pytest.raises(ArgoError, match="still running after 10s"):
        client.wait("wf", timeout_s=10, poll_s=4, clock=lambda: now[0],
                    sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert now[0] == 8.0


def test_unreachable_server_is_a_clear_error():
    client = ArgoClient(f"http://127.0.0.1:{free_port()}/argo", "ns", timeout_s=2.0)
    with pytest.raises(ArgoError, match=r"GET http://127\.0\.0\.1:\d+/argo/api/v1/workflows/ns/wf"):
        client.get_workflow("wf")
