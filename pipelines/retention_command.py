"""`eurolora retention apply` (the bucket's lifecycle rules) and `eurolora gc` (the same policy, applied to a
local artifact root and runs folder by deleting what is older than its class allows)."""

import argparse
import sys
from typing import Any

from pipelines.config_args import add_config_arguments, load_config_or_exit


def register(subparsers: argparse._SubParsersAction) -> None:
    retention = subparsers.add_parser(
        "retention", help="apply the config's retention policy to the S3 bucket (lifecycle rules)",
        description="Put lifecycle rules on the artifact bucket that expire a run's artifacts, QA datasets, "
                    "reports and Argo's archived logs after the days in the config's `retention` section "
                    "(current and noncurrent versions), and abort unfinished multipart uploads. Idempotent; "
                    "rules whose ID does not start with `eurolora-` are kept as they are.")
    actions = retention.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="put the lifecycle rules on the bucket (idempotent)")
    add_config_arguments(apply)
    apply.set_defaults(handler=handle_apply)

    gc = subparsers.add_parser(
        "gc", help="delete local run artifacts and logs older than the retention policy allows",
        description="For a file:// artifact root and the local runs folder: delete each run's artifacts, QA "
                    "datasets, reports and logs older than their class's days. Promoted adapters (under "
                    "models/) are never touched. An s3:// root expires by `eurolora retention apply`.")
    add_config_arguments(gc)
    gc.add_argument("--older-than-days", type=float, default=None,
                    help="one age for every class instead of the config's days (0: everything of runs)")
    gc.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
    gc.set_defaults(handler=handle_gc)


def handle_apply(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    from steps.common.errors import TransientError

    try:
        changed = _apply(config)
    except (TransientError, ValueError) as exc:
        print(f"eurolora retention apply: failed: {exc}", file=sys.stderr)
        return 1
    print("eurolora retention apply: lifecycle rules " + ("updated" if changed else "unchanged"))
    return 0


def _apply(config: Any) -> bool:
    from botocore.exceptions import ClientError

    from steps.common.retention import lifecycle_rules
    from steps.common.storage import ArtifactStore

    root = config.storage.artifact_root
    if not root.startswith("s3://"):
        raise ValueError(f"storage.artifact_root {root} is not on S3; for a local root use `eurolora gc`")
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    logs = "/".join(p for p in (prefix, "argo-artifacts") if p) + "/"
    client = ArtifactStore(config.storage, config.residency).s3_client()
    try:
        current = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        current = []
    theirs = [rule for rule in current if not rule.get("ID", "").startswith("eurolora-")]
    wanted = theirs + lifecycle_rules(config.retention, prefix, logs)
    if _canonical(wanted) == _canonical(current):
        return False
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": wanted})
    return True


def _canonical(rules: list[dict]) -> list[str]:
    import json

    return sorted(json.dumps(rule, sort_keys=True) for rule in rules)


def handle_gc(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    from pathlib import Path

    from pipelines.local.gc import collect_garbage
    from steps.common.storage import local_path

    root = config.storage.artifact_root
    if root.startswith("s3://"):
        print("eurolora gc: the artifact root is on S3; its objects expire by `eurolora retention apply`",
              file=sys.stderr)
        artifacts = None
    else:
        artifacts = local_path(root)
    deleted = collect_garbage(artifacts, Path(config.local.runs_dir), config.retention,
                              older_than_days=args.older_than_days, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for path, cls, age_days in deleted:
        print(f"{verb} {path} ({cls}, {age_days:.1f} days old)")
    print(f"eurolora gc: {verb} {len(deleted)} item(s)")
    return 0
