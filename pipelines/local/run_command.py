"""`eurolora run`: the whole pipeline on this machine."""

import argparse
import signal
import sys
from pathlib import Path

from pipelines.config_args import add_config_arguments, load_config_or_exit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the pipeline locally (embedded model by default)")
    add_config_arguments(parser)
    parser.add_argument("--corpus", help="documents to ingest: a directory or an s3:// prefix")
    parser.add_argument("--run-dir", type=Path, help="directory of this run (default: RUNS_DIR/RUN_ID)")
    parser.add_argument("--until", metavar="STEP", help="stop after this step (e.g. ingest)")
    parser.add_argument("--resume", metavar="RUN_ID", help="re-run only what failed or changed in RUN_ID")
    parser.add_argument("--no-cache", action="store_true", help="run every step even if cached (their fresh outputs still refresh the cache)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from functools import partial

    from pipelines.local.display import default_display
    from pipelines.local.prometheus_process import PrometheusNotInstalled, prometheus_binary
    from pipelines.local.runner import LocalRunner, StepFailed
    from pipelines.local.serving_stack import canary_serving, needs_local_serving
    from pipelines.local.summary_table import print_summary
    from pipelines.spec import build_pipeline

    corpus = []
    if args.corpus:  # a plain path is relative to where the command runs, not to the config file
        uri = args.corpus if "://" in args.corpus else Path(args.corpus).resolve().as_uri()
        corpus = [f"corpus={uri}"]
    config = load_config_or_exit(args, corpus)
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
        print(f"eurolora: step '{exc.record.name}' failed: {exc.record.error}\n"
              f"  log: {exc.record.log}\n  resume with: eurolora run --resume {Path(exc.record.log).parents[2].name}",
              file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"eurolora: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eurolora: interrupted; the running step was stopped (eurolora run --resume RUN_ID goes on)",
              file=sys.stderr)
        return 130
    print_summary(summary)
    return 0
