"""`eurolora run`: the whole pipeline on this machine."""

import argparse
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.config_args import add_config_arguments, load_config_or_exit

if TYPE_CHECKING:
    from pipelines.local.records import RunSummary


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the pipeline locally (embedded model by default)")
    add_config_arguments(parser)
    parser.add_argument("--corpus", help="documents to ingest: a directory or an s3:// prefix")
    parser.add_argument("--run-dir", type=Path, help="directory of this run (default: RUNS_DIR/RUN_ID)")
    parser.add_argument("--until", metavar="STEP", help="stop after this step (e.g. ingest)")
    parser.add_argument("--resume", metavar="RUN_ID",
                        help="re-run only what failed or changed in RUN_ID, with its recorded config unless CONFIG "
                             "is given (--set applies on top)")
    parser.add_argument("--no-cache", action="store_true", help="run every step even if cached (their fresh outputs still refresh the cache)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from functools import partial

    from pipelines.local.display import default_display
    from pipelines.local.prometheus_process import PrometheusNotInstalled, prometheus_binary
    from pipelines.local.runner import LocalRunner, RunInterrupted, StepFailed
    from pipelines.local.serving_stack import canary_serving, needs_local_serving
    from pipelines.local.summary_table import print_summary, registry_aliases
    from pipelines.spec import build_pipeline

    if args.resume and args.config is None:
        # Resume the run as it was configured (config.json in its directory); --set and --corpus apply on top.
        run_dir = args.run_dir or default_runs_dir() / args.resume
        args.config = run_dir / "config.json"
        if not args.config.is_file():
            print(f"eurolora: --resume {args.resume}: no recorded config {args.config}"
                  f"{'' if run_dir.is_dir() else ' (no such run directory)'}; give the CONFIG it ran with",
                  file=sys.stderr)
            return 2
    corpus = []
    if args.corpus:  # a plain path is relative to where the command runs, not to the config file
        uri = args.corpus if "://" in args.corpus else Path(args.corpus).resolve().as_uri()
        corpus = [f"corpus={uri}"]
    config = load_config_or_exit(args, corpus, local_run=True)
    pipeline = build_pipeline()
    if args.until:
        try:
            pipeline.node(args.until)
        except KeyError as exc:
            print(f"eurolora: --until: {exc.args[0]}", file=sys.stderr)
            return 2
    nodes = pipeline.until(args.until) if args.until else pipeline.ordered()
    serving = needs_local_serving(config) and any(node.name == "canary" for node in nodes)
    if serving:
        try:
            prometheus_binary()  # before any work starts, not after an hour of training
        except PrometheusNotInstalled as exc:
            print(f"eurolora: the canary step needs Prometheus locally: {exc}; or set canary.enabled=false, or "
                  "local.serving.managed=false with your own canary.replicas and canary.metrics.prometheus_url",
                  file=sys.stderr)
            return 2
    services = {"canary": partial(canary_serving, config)} if serving else {}
    runner = LocalRunner(config, pipeline, default_display(), use_cache=not args.no_cache, services=services)
    # SIGTERM (kill, a CI timeout) unwinds like Ctrl-C: the running step and any local servers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        summary = runner.run(run_dir=args.run_dir, until=args.until, resume=args.resume)
    except StepFailed as exc:
        print(f"eurolora: step '{exc.record.name}' failed: {exc.record.error}\n  log: {exc.record.log}\n"
              f"  resume with: {resume_command(exc.summary)}", file=sys.stderr)
        return 1
    except RunInterrupted as exc:
        print(f"eurolora: {exc}; the running step was stopped\n  resume with: {resume_command(exc.summary)}",
              file=sys.stderr)
        return exc.exit_code
    except FileNotFoundError as exc:
        print(f"eurolora: {exc}", file=sys.stderr)
        return 2
    print_summary(summary, registry_aliases(config))
    return 0


def default_runs_dir() -> Path:
    """Where `--resume RUN_ID` looks without CONFIG or --run-dir: the shipped config's runs_dir, from here."""
    from pipelines.config import load_config

    return Path(load_config().local.runs_dir)


def resume_command(summary: "RunSummary") -> str:
    """The command that resumes this run; names its directory unless --resume alone finds it."""
    command = f"eurolora run --resume {shlex.quote(summary.run_id)}"
    if Path(summary.run_dir) != default_runs_dir() / summary.run_id:
        command += f" --run-dir {shlex.quote(summary.run_dir)}"
    return command + (f" --until {summary.until}" if summary.until else "")
