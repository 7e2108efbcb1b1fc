"""`eurolora` command line. Each command lives in its own light module exposing `register(subparsers)`;
heavy work is imported inside the handlers so `eurolora --help` stays fast and never imports torch."""

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "pipelines.local.run_command",
    "pipelines.argo.commands",
    "pipelines.serving.command",
    "pipelines.restore_command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eurolora",
        description="Retrain LoRA adapters for a self-hosted LLM without any data leaving the EU.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
