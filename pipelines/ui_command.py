"""`eurolora ui`: MLflow's own UI on the local registry, where users look at adapter versions, their aliases,
lineage tags, the judge's metrics and report. A cluster's registry has its own server: its URL is printed."""

import argparse
import os
import sys

from pipelines.config_args import add_config_arguments, load_config_or_exit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ui", help="open MLflow's UI on the config's registry (local SQLite registry: served on 127.0.0.1)",
        description="Serve MLflow's UI for the registry of CONFIG (the shipped local config by default) on "
                    "127.0.0.1 until Ctrl-C. Registered adapters are under Models; each version links to "
                    "the run that trained it, with the judge's metrics and report.")
    add_config_arguments(parser)
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000)")
    parser.set_defaults(handler=handle)


def mlflow_ui_argv(tracking_uri: str, artifact_location: str, port: int) -> list[str]:
    """MLflow's server on loopback only, one worker (~1 GB), serving the registry's SQLite file and the
    folder that holds its runs' artifacts."""
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", tracking_uri]
    if artifact_location:
        argv += ["--default-artifact-root", artifact_location]
    return argv


def handle(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    registry = config.registry
    if registry.tracking_uri.startswith(("http://", "https://")):
        print(f"eurolora ui: this registry has its own server: open {registry.tracking_uri}")
        return 0
    argv = mlflow_ui_argv(registry.tracking_uri, registry.artifact_location, args.port)
    print(f"eurolora ui: MLflow's UI for {registry.tracking_uri} on http://127.0.0.1:{args.port} "
          f"(model {registry.model_name}); Ctrl-C stops it", flush=True)
    # MLflow 3 ignores DO_NOT_TRACK: without this it sends usage telemetry.
    os.execve(sys.executable, argv, {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
