"""`eurolora compile`, `submit`, `schedule`, `status` and `logs`: the pipeline on Argo Workflows.

Light at import (argparse only): Hera and the step packages are imported inside the handlers, and
nothing here ever imports torch.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pipelines.config_args import add_config_arguments, load_config_or_exit

MANIFEST_FILES = {"template": "workflowtemplate.yaml", "workflow": "workflow.yaml", "cron": "cronworkflow.yaml"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compile", help="compile the pipeline to Argo YAML (WorkflowTemplate, Workflow, "
                                              "CronWorkflow)")
    add_config_arguments(p)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="write the Argo manifests here")
    p.add_argument("--cluster-out", type=Path, metavar="DIR",
                   help="also write the namespace's cluster manifests (RBAC, NetworkPolicy, artifact repository)")
    p.set_defaults(handler=handle_compile)

    p = subparsers.add_parser("submit", help="submit a run to the Argo Server")
    add_config_arguments(p)
    p.add_argument("--from-template", action="store_true",
                   help="create the versioned WorkflowTemplate (if absent) and run from it; default: submit "
                        "a self-contained Workflow")
    p.add_argument("--wait", action="store_true", help="wait for the run to finish, showing its progress")
    p.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up after S seconds "
                   "(default: the workflow deadline + 10 min)")
    p.add_argument("--poll", type=float, default=10.0, metavar="S", help="with --wait: seconds between polls")
    p.set_defaults(handler=handle_submit)

    p = subparsers.add_parser("schedule", help="create the versioned WorkflowTemplate (if absent) and create or "
                                               "update the nightly CronWorkflow on the Argo Server")
    add_config_arguments(p)
    p.set_defaults(handler=handle_schedule)

    p = subparsers.add_parser("status", help="show a run's steps on the Argo Server")
    p.add_argument("run", metavar="RUN", help="workflow name (as printed by submit)")
    add_config_arguments(p)
    p.set_defaults(handler=handle_status)

    p = subparsers.add_parser("logs", help="print a run's step logs from the Argo Server")
    p.add_argument("run", metavar="RUN", help="workflow name (as printed by submit)")
    add_config_arguments(p)
    p.add_argument("--step", help="only this step's pods (e.g. finetune)")
    p.set_defaults(handler=handle_logs)


def _fail(message: str, code: int = 2) -> int:
    print(f"eurolora: {message}", file=sys.stderr)
    return code


def _compile(args: argparse.Namespace) -> Any:
    from pipelines.argo.checks import CompileError
    from pipelines.argo.compiler import compile_pipeline

    config = load_config_or_exit(args)
    try:
        compiled = compile_pipeline(config)
    except CompileError as exc:
        print(f"eurolora: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for warning in compiled.warnings:
        print(f"eurolora: warning: {warning}", file=sys.stderr)
    return config, compiled


def write_manifests(compiled: Any, out: Path) -> list[Path]:
    from pipelines.argo.compiler import to_yaml

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for attr, filename in MANIFEST_FILES.items():
        path = out / filename
        _write_atomic(path, to_yaml(getattr(compiled, attr)))
        written.append(path)
    return written


def write_cluster_manifests(config: Any, out: Path) -> tuple[list[Path], list[str]]:
    import yaml

    from pipelines.argo.cluster import SECRETS_TEMPLATE, cluster_manifests, secrets_template_text

    manifests = cluster_manifests(config)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, docs in manifests.files.items():
        path = out / filename
        _write_atomic(path, yaml.safe_dump_all(docs, sort_keys=False, width=4096))
        written.append(path)
    path = out / SECRETS_TEMPLATE
    _write_atomic(path, secrets_template_text(config, manifests.secrets))
    written.append(path)
    return written, manifests.warnings


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def handle_compile(args: argparse.Namespace) -> int:
    config, compiled = _compile(args)
    for path in write_manifests(compiled, args.out):
        print(path)
    if args.cluster_out:
        paths, warnings = write_cluster_manifests(config, args.cluster_out)
        for warning in warnings:
            print(f"eurolora: warning: {warning}", file=sys.stderr)
        for path in paths:
            print(path)
    print(f"template {compiled.template_name} (code {compiled.code_version})", file=sys.stderr)
    return 0


def _client(config: Any) -> Any:
    from pipelines.argo.client import ArgoClient, resolve_token, server_url

    argo = config.argo
    base = server_url(argo.server_url, config.residency)
    return ArgoClient(base, argo.namespace, token=resolve_token(argo.token_env, argo.token_file, argo.token),
                      verify=argo.verify_tls, timeout_s=argo.request_timeout_s)


def _with_client(args: argparse.Namespace, action: Any, config: Any = None) -> int:
    from pipelines.argo.client import ArgoError
    from steps.common.residency import ResidencyError

    config = config or load_config_or_exit(args)
    try:
        with _client(config) as client:
            return action(client, config)
    except (ArgoError, ResidencyError) as exc:
        return _fail(str(exc), 1 if isinstance(exc, ArgoError) else 2)


def handle_submit(args: argparse.Namespace) -> int:
    from pipelines.argo.client import progress_line, status_table

    config, compiled = _compile(args)

    def submit(client: Any, config: Any) -> int:
        if args.from_template:
            created = client.ensure_workflow_template(compiled.template)
            print(f"template {compiled.template_name}: {'created' if created else 'already on the server'}")
            workflow = client.create_workflow(compiled.workflow)
        else:
            workflow = client.create_workflow(compiled.inline_workflow)
        name = workflow["metadata"]["name"]
        print(f"submitted {name}\n  {client.ui_link(name)}")
        if not args.wait:
            return 0
        last = [""]

        def show(state: dict[str, Any]) -> None:
            line = progress_line(state)
            if line != last[0]:
                print(f"  {line}", flush=True)
                last[0] = line

        timeout = args.timeout or config.argo.workflow_timeout_s + 600
        final = client.wait(name, timeout_s=timeout, poll_s=args.poll, on_update=show)
        print(status_table(final))
        return 0 if final["status"]["phase"] == "Succeeded" else 1

    return _with_client(args, submit, config)


def handle_schedule(args: argparse.Namespace) -> int:
    config, compiled = _compile(args)

    def schedule(client: Any, _config: Any) -> int:
        created = client.ensure_workflow_template(compiled.template)
        print(f"template {compiled.template_name}: {'created' if created else 'already on the server'}")
        outcome = client.apply_cron_workflow(compiled.cron)
        print(f"cron workflow {compiled.cron['metadata']['name']}: {outcome} "
              f"({', '.join(compiled.cron['spec']['schedules'])} {compiled.cron['spec']['timezone']})")
        return 0

    return _with_client(args, schedule, config)


def handle_status(args: argparse.Namespace) -> int:
    from pipelines.argo.client import status_table

    def status(client: Any, _config: Any) -> int:
        print(status_table(client.get_workflow(args.run)))
        return 0

    return _with_client(args, status)


def handle_logs(args: argparse.Namespace) -> int:
    def logs(client: Any, _config: Any) -> int:
        prefix = f"{args.run}-{args.step.replace('_', '-')}-" if args.step else ""
        for pod, line in client.logs(args.run):
            if not prefix or pod.startswith(prefix):
                print(f"[{pod}] {line}")
        return 0

    return _with_client(args, logs)
