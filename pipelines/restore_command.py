"""`eurolora restore`: recover a champion (or any version) whose adapter artifact was deleted or damaged.

Checks the version's published adapter (`eurolora.adapter_uri`: manifest present, every file matching
its sha256, the manifest's digest equal to the registered `eurolora.adapter_digest`). If it is intact,
nothing is done. Otherwise the adapter is read from its locked backup by the S3 VersionIds recorded at
promotion (so overwrites and delete markers on the backup keys do not matter), verified, republished
atomically under `<artifact_root>/restored/`, and registered as a new model version with the lineage
tags and `eurolora.restored_from=v<N>`; the aliases that pointed at the damaged version move to the new
one under the registry's promotion lock (an alias that moved meanwhile is left alone).

Exit codes: 0 restored or already intact; 1 failure (message on stderr); 2 invalid configuration.
"""

import argparse
import sys
from typing import Any

from pipelines.config_args import add_config_arguments, load_config_or_exit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "restore", help="restore a deleted or corrupted champion adapter from its locked backup",
        description="Check a registered adapter and, if its artifact is missing or corrupt, restore it "
                    "from its S3 Object Lock backup and re-register it (the aliases follow).")
    add_config_arguments(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", help="the model version to check and restore")
    which.add_argument("--alias", default="champion",
                       help="the alias whose version to check and restore (default: champion)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    try:
        return _restore(args, config)
    except Exception as exc:  # noqa: BLE001 -- every failure is reported with its reason and exit 1
        from steps.common.errors import TransientError

        hint = " (transient: retry later)" if isinstance(exc, TransientError) else ""
        print(f"eurolora restore: failed{hint}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _restore(args: argparse.Namespace, config: Any) -> int:
    import tempfile
    from pathlib import Path

    from steps.common.backup_store import BackupStore
    from steps.common.registry import Registry
    from steps.common.restore import RestoreError, restore_version
    from steps.common.storage import ArtifactStore

    registry = Registry(config.registry, config.residency)
    if args.version:
        version = str(args.version)
        target = f"version {version}"
    else:
        found = registry.alias_version(args.alias)
        if found is None:
            raise RestoreError(f"model {config.registry.model_name!r} has no {args.alias!r} alias in "
                               f"{config.registry.tracking_uri}: nothing to restore (use --version N)")
        version = found.version
        target = f"{args.alias} (version {version})"
    store = ArtifactStore(config.storage, config.residency)
    backup = BackupStore.from_settings(config.promote.backup, config.storage, config.residency)
    scratch = Path(tempfile.gettempdir()) / "eurolora"
    print(f"eurolora restore: checking {config.registry.model_name} {target}")
    result = restore_version(registry=registry, store=store, backup=backup, version=version,
                             experiment=config.registry.experiment, lock=config.promote.lock, scratch=scratch)
    if result.outcome == "intact":
        print(f"  adapter {result.adapter_uri} is intact (digest {result.digest[:16]}...): "
              "nothing to restore")
        return 0
    print(f"  adapter {result.adapter_uri} was not intact: {result.problem}")
    print(f"  restored from the locked backup {result.backup_uri} (digest {result.digest[:16]}..., verified)")
    print(f"  republished at {result.new_adapter_uri}")
    print(f"  registered as version {result.new_version} (eurolora.restored_from=v{result.version})")
    for alias in result.moved_aliases:
        print(f"  moved alias {alias!r}: version {result.version} -> {result.new_version}")
    for alias, why in result.skipped_aliases.items():
        print(f"  left alias {alias!r} alone: {why}")
    if not args.version and args.alias not in result.moved_aliases:
        why = result.skipped_aliases.get(args.alias, "unknown reason")
        print(f"eurolora restore: the {args.alias!r} alias was not moved to the restored version "
              f"{result.new_version}: {why}", file=sys.stderr)
        return 1
    return 0
